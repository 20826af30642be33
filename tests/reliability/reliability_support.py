"""What the reliability scenarios share: running the real CLI, reading a lake, comparing change sets.

A lake is read through a `LakeView` (a local folder or an S3 prefix), so every scenario asserts the same things
on both kinds of lake: the change rows published under `raw/`, that every file there is a whole Parquet file,
and a fingerprint (every key and the hash of its bytes) to prove that a failed run changed nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from support import cli
from support.cli import ingest as ingest  # the one way to run ingestion, shared by every suite
from support.cli import start_ingest as start_ingest

from ingestion.catalog import Table
from ingestion.cdc import change_schema
from ingestion.duck import quote_identifier, sql_literal

ROOT = Path(__file__).resolve().parents[2]

ChangeRow = tuple[object, ...]

# -- running the CLI ---------------------------------------------------------------------------------------------


def csv_args(folder: Path, tables: str = "clientes,produtos") -> list[str]:
    """A capture of a CSV folder; by default of the tables of the suite's history."""
    return cli.csv_args(folder, tables)


# -- source histories ----------------------------------------------------------------------------------------------

CLIENTES_HEADER = "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao"
PRODUTOS_HEADER = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto"


def _cliente(rng: random.Random, key: str, version: int) -> str:
    # flBlueSky is empty for a third of the customers: NULL in both snapshots must never count as a change
    bluesky = "" if int(key[1:]) % 3 == 0 else str(rng.randint(0, 1))
    email, twitch, youtube, instagram = (rng.randint(0, 1) for _ in range(4))
    return (
        f"{key};{email};{twitch};{youtube};{bluesky};{instagram};{rng.randint(-50, 5000)};"
        f"2024-01-01 10:00:00.000;2024-02-{1 + version:02d} 10:00:00.000"
    )


def _produto(rng: random.Random, key: int, version: int) -> str:
    description = "" if key % 4 == 0 else f"Revisão {version} do produto {key}"
    return f"{key};Produto {key};{description};{rng.choice(['chat', 'rpg', 'present'])}"


def write_history(base: Path, versions: int = 4, seed: int = 7, size: int = 40) -> list[Path]:
    """`versions` snapshot folders of clientes and produtos with inserts, updates, deletes and re-inserts.

    Deterministic for a seed. From one version to the next about a fifth of the rows change, a tenth are deleted
    (some of them come back later, with other values) and a few are new.
    """
    rng = random.Random(seed)
    alive_c = {f"c{i:04d}": _cliente(rng, f"c{i:04d}", 0) for i in range(size)}
    alive_p = {i: _produto(rng, i, 0) for i in range(1, size // 4 + 1)}
    deleted_c: list[str] = []
    next_c = size
    folders = []
    for version in range(versions):
        if version:
            for key in list(alive_c):
                roll = rng.random()
                if roll < 0.2:
                    alive_c[key] = _cliente(rng, key, version)
                elif roll < 0.3:
                    del alive_c[key]
                    deleted_c.append(key)
            for key in rng.sample(deleted_c, k=min(2, len(deleted_c))):
                if key not in alive_c:
                    alive_c[key] = _cliente(rng, key, version)
            for _ in range(3):
                key = f"c{next_c:04d}"
                alive_c[key] = _cliente(rng, key, version)
                next_c += 1
            for key_p in list(alive_p):
                if rng.random() < 0.3:
                    alive_p[key_p] = _produto(rng, key_p, version)
            alive_p.pop(rng.choice(list(alive_p)))
            alive_p[max(alive_p) + 1] = _produto(rng, max(alive_p) + 1, version)
        folder = base / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "clientes.csv").write_text(
            "\n".join([CLIENTES_HEADER, *(alive_c[k] for k in sorted(alive_c))]) + "\n", encoding="utf-8"
        )
        (folder / "produtos.csv").write_text(
            "\n".join([PRODUTOS_HEADER, *(alive_p[k] for k in sorted(alive_p))]) + "\n", encoding="utf-8"
        )
        folders.append(folder)
    return folders


# -- reading a lake ------------------------------------------------------------------------------------------------


class LakeView(Protocol):
    """Read-only access to every object of a lake, by key relative to the lake root."""

    def list_keys(self, prefix: str = "") -> list[str]: ...

    def read(self, key: str) -> bytes | None: ...


@dataclass(frozen=True)
class LocalView:
    root: Path

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()]
        return sorted(k for k in found if k.startswith(prefix))

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None


@dataclass(frozen=True)
class S3View:
    """Reads with the test server's own client, never with the configuration under test."""

    client: Any
    bucket: str
    prefix: str

    @classmethod
    def of(cls, client: Any, uri: str) -> S3View:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return cls(client, bucket, prefix.strip("/"))

    def list_keys(self, prefix: str = "") -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            found += [item["Key"][strip:] for item in page.get("Contents", [])]
        return sorted(found)

    def read(self, key: str) -> bytes | None:
        full = f"{self.prefix}/{key}" if self.prefix else key
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body


def lake_kind(uri: str | Path) -> str:
    """How a report line names a lake: `S3` or `local`."""
    return "S3" if str(uri).startswith("s3://") else "local"


def fingerprint(view: LakeView) -> dict[str, str]:
    """Every key of the lake and the SHA-256 of its bytes: equal fingerprints mean an unchanged lake."""
    found = {}
    for key in view.list_keys():
        data = view.read(key)
        if data is not None:
            found[key] = hashlib.sha256(data).hexdigest()
    return found


def change_rows(view: LakeView) -> Counter[ChangeRow]:
    """Every published row as (kind, table, columns...), without the columns that hold the time of the run
    (`_cdc_timestamp`; `_ingested_at` and `_batch_id` of events), which differ between two runs of one history."""
    rows: Counter[ChangeRow] = Counter()
    for key in view.list_keys("raw/"):
        data = view.read(key)
        assert data is not None, f"{key} was listed but cannot be read"
        _, _, kind, table, _ = key.split("/", 4)
        for row in pq.read_table(io.BytesIO(data)).to_pylist():
            for per_run in ("_cdc_timestamp", "_ingested_at", "_batch_id"):
                row.pop(per_run, None)
            rows[(kind, table, *row.values())] += 1
    return rows


def assert_raw_complete(view: LakeView) -> int:
    """Every object under raw/ is a whole, readable Parquet file named *.parquet; returns how many there are."""
    keys = view.list_keys("raw/")
    for key in keys:
        assert key.endswith(".parquet"), f"unexpected object under raw/: {key}"
        data = view.read(key)
        if data is None:  # listed, then gone: raw/ is write-once, so this is itself a failure
            raise AssertionError(f"{key} disappeared from raw/")
        pq.read_table(io.BytesIO(data))
    return len(keys)


@dataclass
class Comparison:
    expected: int
    lost: int
    duplicated: int

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


def compare(truth: Counter[ChangeRow], found: Counter[ChangeRow]) -> Comparison:
    return Comparison(
        expected=sum(truth.values()),
        lost=sum((truth - found).values()),
        duplicated=sum((found - truth).values()),
    )


@dataclass
class RawObserver:
    """Reads raw/ over and over while runs go on, failing if it ever sees a file that is not whole Parquet."""

    view: LakeView
    interval: float = 0.01
    observations: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                assert_raw_complete(self.view)
                self.observations += 1
            except AssertionError as exc:
                self.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - every failure to read is a finding, reported below
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.interval)

    @contextmanager
    def watching(self) -> Iterator[RawObserver]:
        thread = threading.Thread(target=self._loop, name="raw-observer", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)
        assert not self.errors, f"a partial or unreadable file was visible under raw/: {self.errors[:3]}"


# -- dbt on a test lake (run with support.dbt) ---------------------------------------------------------------


def capture_files(lake: Path, table: Table) -> list[Path]:
    """The files ingestion published for `table` in capture order: the full load, then the change files."""
    folder = lake / "raw" / table.source
    return [
        *sorted((folder / "full-load" / table.name).glob("*.parquet")),
        *sorted((folder / "cdc" / table.name).glob("*.parquet")),
    ]


def write_change_file(path: Path, table: Table, rows: Iterable[Mapping[str, object]]) -> Path:
    """A change file written by hand with the lake's exact schema (`ingestion.cdc.change_schema`)."""
    schema = change_schema(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows), schema=schema), path)
    return path


def relation_rows(con: duckdb.DuckDBPyConnection, relation: str, columns: Iterable[str]) -> Counter[ChangeRow]:
    """The rows of `relation` (a table name or a `read_parquet(...)`), projected on `columns`, as a multiset."""
    quoted = ", ".join(quote_identifier(c) for c in columns)
    return Counter(con.execute(f"select {quoted} from {relation}").fetchall())


def snapshot_truth(lake: Path, table: Table) -> str:
    """The current snapshot of `table` that ingestion holds (its state points to it), as a relation to read."""
    state = json.loads((lake / f"_ingestion/{table.source}/{table.name}/state.json").read_text())
    return f"read_parquet({sql_literal(str(lake / state['snapshot_key']))})"


def bronze_relation(table: Table) -> str:
    return f"bronze.{quote_identifier(f'bronze_{table.source}__{table.name}')}"


def compare_bronze(con: duckdb.DuckDBPyConnection, truths: Iterable[tuple[Table, str]]) -> Comparison:
    """Each table's Bronze against its truth (a relation), as multisets of the declared columns."""
    truth: Counter[ChangeRow] = Counter()
    found: Counter[ChangeRow] = Counter()
    for table, relation in truths:
        for rows, relation_read in ((truth, relation), (found, bronze_relation(table))):
            for row, count in relation_rows(con, relation_read, table.column_names).items():
                rows[(table.name, *row)] += count
    return compare(truth, found)


def warehouse_state(database: Path) -> dict[str, list[ChangeRow]]:
    """Every row of every table of the warehouse, sorted: equal states mean a build changed nothing."""
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "order by all"
        ).fetchall()
        return {
            f"{schema}.{name}": sorted(
                con.execute(f"select * from {quote_identifier(schema)}.{quote_identifier(name)}").fetchall(), key=repr
            )
            for schema, name in tables
        }


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Three snapshot folders of clientes and produtos, the change rows a run that never failed publishes, and
    the lake that run wrote (read-only: copy its files, never write into it)."""

    folders: list[Path]
    twin: Counter[ChangeRow]
    lake: Path


@dataclass
class ReportLine:
    nodeid: str
    scenario: str
    runs: int
    expected: int
    lost: int
    duplicated: int
    note: str = ""


@dataclass
class ReliabilityReport:
    lines: list[ReportLine] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        header = [
            "| scenario | runs | rows expected | rows lost | rows duplicated | outcome |",
            "|---|---:|---:|---:|---:|---|",
        ]
        body = []
        # by file, each file's lines in the order its tests ran (parallel workers finish files in any order)
        for line in sorted(self.lines, key=lambda line: line.nodeid.split("::", 1)[0]):
            outcome = self.outcomes.get(line.nodeid, "not run")
            if line.note:
                outcome = f"{outcome} ({line.note})"
            body.append(
                f"| {line.scenario} | {line.runs} | {line.expected} | {line.lost} | {line.duplicated} | {outcome} |"
            )
        return "\n".join(header + body)


# The key of a report line in a test's `user_properties`: they travel with its reports from a parallel worker to the
# process that writes the report.
REPORT_PROPERTY = "reliability_report_line"


def report_lines(properties: Iterable[tuple[str, object]]) -> list[ReportLine]:
    """The report lines a test recorded, from its report's `user_properties`."""
    return [
        ReportLine(*value) for name, value in properties if name == REPORT_PROPERTY and isinstance(value, tuple | list)
    ]


class Recorder:
    """What a test uses to add its line(s) to the report."""

    def __init__(self, properties: list[tuple[str, object]], nodeid: str) -> None:
        self._properties = properties
        self._nodeid = nodeid

    def record(
        self, scenario: str, *, runs: int, expected: int = 0, lost: int = 0, duplicated: int = 0, note: str = ""
    ) -> None:
        line = ReportLine(self._nodeid, scenario, runs, expected, lost, duplicated, _scrub(note))
        self._properties.append((REPORT_PROPERTY, dataclasses.astuple(line)))


def _scrub(text: str) -> str:
    """The report is a file in the repository's tree: no paths of the machine that ran the tests in it."""
    for folder, label in ((ROOT, "<repo>"), (Path(tempfile.gettempdir()).resolve(), "<tmp>")):
        text = text.replace(str(folder), label)
    # pytest's per-run folders (pytest-of-<user>/pytest-<n>/<test>) say nothing a reader needs
    text = re.sub(r"<tmp>/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+", "<tmp>", text)
    return text.replace("|", "\\|")
