"""The circuit breaker: a capture that deletes 60% of a table (a truncated export) is held, the run exits 6
naming the table, the counts and the thresholds, the lake's data and state are unchanged; `approve` publishes the
held capture as it was, and `--allow-mass-delete` publishes at once."""

from __future__ import annotations

import io
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from reliability_support import (
    CLIENTES_HEADER,
    LakeView,
    LocalView,
    Recorder,
    change_rows,
    csv_args,
    fingerprint,
    ingest,
    lake_kind,
)
from support.cli import run_cli
from support.dbt import copy_project

from ingestion.catalog import Breaker, load_catalog
from ingestion.config import FAILPOINT_ENV
from ingestion.errors import DeclarationError
from ingestion.lake import open_lake
from ingestion.lock import LOCK_KEY

ROWS = 250


def clientes(folder: Path, keys: range) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"c{k:04d};1;0;1;;0;{k};2024-01-01 10:00:00.000;2024-02-01 10:00:00.000" for k in keys]
    (folder / "clientes.csv").write_text("\n".join([CLIENTES_HEADER, *lines]) + "\n", encoding="utf-8")
    return folder


def approve(lake: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return run_cli("approve", *names, "--lake", str(lake), timeout=120)


def data_and_state(lake: Path) -> dict[str, str]:
    """Every key of the lake but the held captures: what a refused run must leave as it was."""
    return {k: v for k, v in fingerprint(LocalView(lake)).items() if "/held/" not in k}


def operations(lake: Path) -> Counter[str]:
    return Counter(str(row[2]) for row in change_rows(LocalView(lake)))


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    result = ingest(lake, *csv_args(clientes(tmp_path / "v0", range(ROWS)), tables="clientes"))
    assert result.returncode == 0, result.stderr
    return lake


def test_a_capture_deleting_60_percent_is_held_then_approved(lake: Path, tmp_path: Path, report: Recorder) -> None:
    truncated = clientes(tmp_path / "v1", range(ROWS * 2 // 5))  # the first 40%: as if the export stopped early
    before = data_and_state(lake)
    held = ingest(lake, *csv_args(truncated, tables="clientes"))
    assert held.returncode == 6, held.stderr
    message = held.stderr
    for text in ("loyalty.clientes", f"delete 150 of {ROWS} rows", "60% deleted", "threshold of 20%", "approve"):
        assert text in message, message
    assert "Traceback" not in message
    assert data_and_state(lake) == before, "the held capture changed the lake's data or state"
    assert list((lake / "_ingestion/loyalty/clientes/held").glob("*.json"))

    approved = approve(lake, "loyalty.clientes")
    assert approved.returncode == 0, approved.stderr
    assert operations(lake) == Counter({"I": ROWS, "D": 150})
    assert not list((lake / "_ingestion/loyalty/clientes/held").iterdir())
    # the approved capture is the held one, as it was: its id and sequences are those it was held with
    state = json.loads((lake / "_ingestion/loyalty/clientes/state.json").read_text())
    assert (state["captures"][-1]["first_sequence"], state["captures"][-1]["last_sequence"]) == (ROWS + 1, ROWS + 150)
    again = ingest(lake, *csv_args(truncated, tables="clientes"))
    assert again.returncode == 0 and operations(lake) == Counter({"I": ROWS, "D": 150})
    report.record(
        "capture deleting 60% of a table: held (exit 6), then approve",
        runs=3,
        expected=ROWS + 150,
        lost=ROWS + 150 - sum(operations(lake).values()),
        note="exit 6 with counts and thresholds; approve published the held capture",
    )


def test_allow_mass_delete_publishes_at_once(lake: Path, tmp_path: Path, report: Recorder) -> None:
    result = ingest(lake, *csv_args(clientes(tmp_path / "v1", range(50)), tables="clientes"), "--allow-mass-delete")
    report.record("capture deleting 80% with --allow-mass-delete", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 0, result.stderr
    assert "published anyway" in result.stderr
    assert operations(lake) == Counter({"I": ROWS, "D": 200})


def test_a_later_good_capture_supersedes_the_held_one(lake: Path, tmp_path: Path, report: Recorder) -> None:
    assert ingest(lake, *csv_args(clientes(tmp_path / "v1", range(10)), tables="clientes")).returncode == 6
    fixed = ingest(lake, *csv_args(clientes(tmp_path / "v2", range(ROWS - 5)), tables="clientes"))
    assert fixed.returncode == 0, fixed.stderr
    assert operations(lake) == Counter({"I": ROWS, "D": 5})
    assert not list((lake / "_ingestion/loyalty/clientes/held").iterdir())
    late = approve(lake, "loyalty.clientes")
    report.record("held capture superseded by a good one", runs=3, note=f"approve afterwards: exit {late.returncode}")
    assert late.returncode == 2 and "no capture is held" in late.stderr


def test_small_deletes_and_tiny_tables_pass(lake: Path, tmp_path: Path, report: Recorder) -> None:
    result = ingest(lake, *csv_args(clientes(tmp_path / "v1", range(ROWS - 50)), tables="clientes"))  # 20%
    assert result.returncode == 0, result.stderr
    tiny = tmp_path / "tiny-lake"
    assert ingest(tiny, *csv_args(clientes(tmp_path / "t0", range(40)), tables="clientes")).returncode == 0
    emptied = ingest(tiny, *csv_args(clientes(tmp_path / "t1", range(2)), tables="clientes"))
    report.record("20% deleted, and a 40-row table losing 95%", runs=3, note="both published (thresholds)")
    assert emptied.returncode == 0, emptied.stderr


def test_thresholds_are_overridable_per_table(tmp_path: Path, report: Recorder) -> None:
    project = copy_project(tmp_path / "project")
    sources = project / "models/bronze/loyalty/_loyalty__sources.yml"
    document = yaml.safe_load(sources.read_text(encoding="utf-8"))
    table = next(t for t in document["sources"][0]["tables"] if t["name"] == "clientes")
    table["meta"]["circuit_breaker"] = {"max_deleted_share": 0.7, "min_rows": 10}
    sources.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    declared = load_catalog([sources]).source("loyalty").table("clientes")
    assert declared.breaker == Breaker(max_deleted_share=0.7, max_row_drop_share=0.2, min_rows=10)
    table["meta"]["circuit_breaker"] = {"max_deleted_share": 1.5}
    sources.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    with pytest.raises(DeclarationError) as refused:
        load_catalog([sources])
    assert refused.value.where == f"{sources.name}: table loyalty.clientes"
    assert refused.value.problem == "meta.circuit_breaker.max_deleted_share must be a share between 0 and 1"
    assert refused.value.exit_code == 2
    report.record("circuit breaker thresholds declared per table", runs=0, note="override parsed, bad share refused")


def _rewritten(data: bytes) -> bytes:
    """The same rows with one value changed: a valid Parquet file of the held row count, other bytes."""
    rows = pq.read_table(io.BytesIO(data))
    points = rows.column("qtdePontos").to_pylist()
    changed = rows.set_column(
        rows.schema.get_field_index("qtdePontos"),
        "qtdePontos",
        pa.array([p + 1 for p in points], rows.column("qtdePontos").type),
    )
    out = io.BytesIO()
    pq.write_table(changed, out)
    return out.getvalue()


# how a held file is damaged, which file, and what the refusal says about it
DAMAGE: dict[str, tuple[str, Callable[[bytes, bytes], bytes], str]] = {
    "garbage": ("changes", lambda changes, snapshot: b"PAR1garbage", "is not readable Parquet"),
    "another file": ("changes", lambda changes, snapshot: snapshot, "rows where the capture recorded 150"),
    "one value changed": ("changes", lambda changes, snapshot: _rewritten(changes), "other bytes than were captured"),
    "snapshot garbage": ("snapshot", lambda changes, snapshot: b"PAR1garbage", "is not readable Parquet"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_approve_refuses_a_held_capture_changed_since_it_was_held(
    damage: str, any_lake: str, lake_view: LakeView, tmp_path: Path, report: Recorder
) -> None:
    ingest(any_lake, *csv_args(clientes(tmp_path / "v0", range(ROWS)), tables="clientes"), check=True)
    held = ingest(any_lake, *csv_args(clientes(tmp_path / "v1", range(100)), tables="clientes"))
    assert held.returncode == 6, held.stderr
    prefix = "_ingestion/loyalty/clientes/held/"
    keys = lake_view.list_keys(prefix)
    files = {name: next(k for k in keys if k.endswith(f".{name}.parquet")) for name in ("changes", "snapshot")}
    target, corrupt, says = DAMAGE[damage]
    originals = {name: lake_view.read(key) or b"" for name, key in files.items()}
    open_lake(any_lake).put_bytes(files[target], corrupt(originals["changes"], originals["snapshot"]))
    before = fingerprint(lake_view)

    refused = run_cli("approve", "loyalty.clientes", "--lake", any_lake, timeout=120)
    report.record(
        f"approve of a held capture whose {target} file was replaced ({damage}), {lake_kind(any_lake)} lake",
        runs=3,
        expected=ROWS,
        lost=ROWS - sum(1 for row in change_rows(lake_view) if row[2] == "I"),
        duplicated=sum(1 for row in change_rows(lake_view) if row[2] == "D"),
        note=f"exit {refused.returncode}",
    )
    assert refused.returncode == 4, refused.stderr
    assert "Traceback" not in refused.stderr
    assert files[target] in refused.stderr and says in refused.stderr, refused.stderr
    assert fingerprint(lake_view) == before, "a refused approve changed the lake"
    assert Counter(str(row[2]) for row in change_rows(lake_view)) == Counter({"I": ROWS})


def test_a_rerun_refuses_a_staged_change_file_changed_after_a_crash(
    any_lake: str, lake_view: LakeView, tmp_path: Path, report: Recorder
) -> None:
    ingest(any_lake, *csv_args(clientes(tmp_path / "v0", range(ROWS)), tables="clientes"), check=True)
    v1 = csv_args(clientes(tmp_path / "v1", range(20, ROWS + 10)), tables="clientes")
    crashed = ingest(any_lake, *v1, env={FAILPOINT_ENV: "after-pending"})
    assert crashed.returncode != 0
    (staged,) = lake_view.list_keys("_ingestion/loyalty/clientes/staged/")
    open_lake(any_lake).put_bytes(staged, b"PAR1garbage")
    # the killed run's lock is taken over and released by the rerun: everything else stays as it was
    before = {k: v for k, v in fingerprint(lake_view).items() if k != LOCK_KEY}
    rerun = ingest(any_lake, *v1)
    report.record(
        f"staged change file of an interrupted capture replaced before the rerun, {lake_kind(any_lake)} lake",
        runs=2,
        note=f"rerun exit {rerun.returncode}",
    )
    assert rerun.returncode == 4, rerun.stderr
    assert staged in rerun.stderr and "is not readable Parquet" in rerun.stderr, rerun.stderr
    assert fingerprint(lake_view) == before, "the refused rerun changed the lake"
    assert not any(k.startswith("raw/loyalty/cdc/") for k in before), "the crash happened after publishing"
