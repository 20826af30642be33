"""Cursor mode from a real Postgres: captures that read only the rows whose cursor moved give the lake the same
state as snapshot captures of the same database, over inserts, updates and deletes (found by the key scan); a
transaction that commits after a capture with a cursor value below what it saw is still captured; rows with a NULL
cursor are read by every capture; a cursor set back is the documented blind spot, which `verify` names and a
snapshot capture repairs.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgserver import PostgresCluster, fresh_database
from support.cli import ingest

from ingestion.catalog import Catalog, Column, Source, Table, load_catalog
from ingestion.config import Config
from ingestion.errors import BadSettingError, DeclarationError, LakeStateError
from ingestion.lake import open_lake
from ingestion.readers.base import CaptureContext
from ingestion.readers.postgres import PostgresReader
from ingestion.readers.registry import ReaderOptions
from ingestion.run import RunRequest, run
from ingestion.state import CaptureRecord
from ingestion.verify import Receipt, verify_table

ITEMS = Table(
    source="shop",
    name="items",
    columns=(
        Column("id", "integer"),
        Column("name", "varchar"),
        Column("price", "decimal(10,2)"),
        Column("updated_at", "timestamp"),
    ),
    primary_key=("id",),
    database_table=("public", "items"),
    database_mode="cursor",
    cursor_column="updated_at",
    cursor_key_scan=2,
)
SHOP = Catalog({"shop": Source("shop", "snapshot", {"items": ITEMS})})

# the writer takes the cursor from the database's clock: `now()`, its transaction's start
DDL = """
create table public.items (
    id integer primary key, name text, price numeric(10,2), updated_at timestamptz default now()
);
create index on public.items (updated_at);
insert into public.items (id, name, price, updated_at)
    select i, 'item ' || i, i * 1.25, now() - (40 - i) * interval '1 minute' from generate_series(1, 40) as i;
"""


def capture(dsn: str, lake: str, mode: str | None = None) -> CaptureRecord:
    """One run of `shop.items` into `lake` through the run service; its capture record."""
    options = ReaderOptions(dsn=dsn, mode=mode)  # type: ignore[arg-type]
    request = RunRequest(lake, (SHOP.sources["shop"],), reader="postgres", reader_options=options)
    result = run(Config.from_env({}), SHOP, request)
    record = result.sources[0].records["items"]
    assert record is not None
    return record


def verify(dsn: str, lake: str, tmp_path: Path) -> Receipt:
    folder = tmp_path / f"verify_{len(list(tmp_path.glob('verify_*')))}"
    return verify_table(open_lake(lake), ITEMS, PostgresReader(dsn, mode="snapshot"), folder)


def lake_state(lake: str, tmp_path: Path, dsn: str) -> tuple[int, str]:
    """The lake's replayed state of the table (`verify`'s replay of its change files): rows and digest."""
    receipt = verify(dsn, lake, tmp_path)
    return receipt.lake_rows, receipt.lake_digest


def write(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def shop(postgres_server: PostgresCluster) -> str:
    dsn = fresh_database(postgres_server, "cursor")
    write(dsn, DDL)
    return dsn


def test_cursor_captures_equal_snapshot_captures(shop: str, any_lake: str, tmp_path: Path) -> None:
    cursor_lake, snapshot_lake = any_lake, str(tmp_path / "snapshot")
    days = [
        (
            "update public.items set price = price + 1, updated_at = now() where id in (3, 4)",
            "insert into public.items (id, name, price) values (41, 'new', 9.99)",
        ),
        (
            "delete from public.items where id in (5, 6)",
            "update public.items set name = 'renamed', updated_at = now() where id = 7",
        ),
        (
            "insert into public.items (id, name, price) values (42, 'newer', 1.00)",
            "delete from public.items where id = 41",
        ),
        ("update public.items set name = 'again', updated_at = now() where id = 42",),
    ]
    first = capture(shop, cursor_lake)
    capture(shop, snapshot_lake, "snapshot")
    assert (first.kind, first.inserts) == ("full-load", 40)
    records = []
    for statements in days:
        write(shop, *statements)
        records.append(capture(shop, cursor_lake))
        capture(shop, snapshot_lake, "snapshot")
    # the window reads what moved; deletes wait for the key scan, every second capture (41's in the fourth)
    assert [(r.inserts, r.updates, r.deletes) for r in records] == [(1, 2, 0), (0, 1, 2), (1, 0, 0), (0, 1, 1)]
    assert lake_state(cursor_lake, tmp_path, shop) == lake_state(snapshot_lake, tmp_path, shop)
    receipt = verify(shop, cursor_lake, tmp_path)
    assert receipt.equal and receipt.source_rows == 40 + 2 - 3, receipt.describe()
    state = records[-1].reader_state
    assert state is not None and state["kind"] == "cursor" and state["mark"] is not None


def test_a_cursor_window_reads_only_the_rows_that_moved(shop: str, tmp_path: Path) -> None:
    """After a quiet capture (no transaction open: the mark moves up to the highest value), the next read holds the
    row changed since and the row at the mark itself (the window includes its lower bound), not the 40 others."""
    lake = str(tmp_path / "lake")
    capture(shop, lake)
    quiet = capture(shop, lake)
    assert quiet.kind == "unchanged" and quiet.reader_state is not None
    write(shop, "update public.items set price = 0, updated_at = now() where id = 9")
    reader = PostgresReader(shop)
    window = reader.read(ITEMS, CaptureContext(tmp_path, previous=quiet.reader_state))
    reader.close()
    assert window.partial and window.expected_rows() == 2
    assert window.keys is not None  # the second cursor capture since the full load scans every key
    record = capture(shop, lake)
    assert (record.kind, record.updates, record.snapshot_rows) == ("cdc", 1, 40)
    assert verify(shop, lake, tmp_path).equal


def test_a_snapshot_capture_starts_the_window_and_a_broken_window_is_refused(shop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    whole = capture(shop, lake, "snapshot")
    assert whole.kind == "full-load" and whole.reader_state is not None and whole.reader_state["mark"] is not None
    write(shop, "update public.items set name = 'moved', updated_at = now() where id = 5")
    moved = capture(shop, lake)
    assert (moved.kind, moved.updates) == ("cdc", 1)
    broken = {**moved.reader_state, "since_key_scan": "three"}  # type: ignore[dict-item]
    reader = PostgresReader(shop)
    with pytest.raises(LakeStateError) as refused:
        reader.read(ITEMS, CaptureContext(tmp_path, previous=broken))
    reader.close()
    assert (refused.value.table, refused.value.exit_code) == ("shop.items", 4)
    assert refused.value.repair.startswith("capture the table once with --mode snapshot")


def test_a_transaction_that_commits_after_a_capture_is_not_lost(shop: str, tmp_path: Path) -> None:
    """A writer opens a transaction (its `now()` is fixed at its start), a second writer commits later rows, a
    capture runs and sees only the second's, then the first commits a row whose cursor is below everything that
    capture read. A mark taken as "the highest value read" would skip that row for ever; the horizon keeps it in the
    next window."""
    lake = str(tmp_path / "lake")
    capture(shop, lake)
    late = psycopg.connect(shop)
    late.execute("insert into public.items (id, name, price) values (100, 'late', 1.00)")
    late.execute("update public.items set name = 'late update', updated_at = now() where id = 1")
    write(shop, "insert into public.items (id, name, price) values (101, 'early', 2.00)")
    seen = capture(shop, lake)
    assert (seen.inserts, seen.updates) == (1, 0)  # the open transaction's rows are not in the run's cut
    late.commit()
    with psycopg.connect(shop) as conn:
        (late_at, highest_seen) = conn.execute(
            "select (select updated_at from public.items where id = 100), "
            "(select updated_at from public.items where id = 101)"
        ).fetchone() or (None, None)
    assert late_at is not None and highest_seen is not None and late_at < highest_seen
    caught = capture(shop, lake)
    late.close()
    assert (caught.inserts, caught.updates, caught.deletes) == (1, 1, 0)
    receipt = verify(shop, lake, tmp_path)
    assert receipt.equal and receipt.source_rows == 42, receipt.describe()


def test_rows_with_a_null_cursor_are_read_by_every_capture(shop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    capture(shop, lake)
    write(shop, "insert into public.items (id, name, price, updated_at) values (200, 'no cursor', 3.00, null)")
    inserted = capture(shop, lake)
    write(shop, "update public.items set price = 4.00 where id = 200")  # still NULL
    updated = capture(shop, lake)
    assert (inserted.inserts, updated.updates) == (1, 1)
    assert verify(shop, lake, tmp_path).equal


def test_a_cursor_set_back_is_named_by_verify_and_repaired_by_a_snapshot_capture(shop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    capture(shop, lake)
    write(shop, "update public.items set price = 0, updated_at = '2000-01-01' where id = 12")  # set back
    missed = capture(shop, lake)
    assert missed.kind == "unchanged"
    receipt = verify(shop, lake, tmp_path)
    assert not receipt.equal and receipt.counts["different"] == 1
    assert receipt.examples["different"] == [(("id", 12),)], receipt.describe()
    repaired = capture(shop, lake, "snapshot")
    assert (repaired.kind, repaired.updates) == ("cdc", 1)
    assert verify(shop, lake, tmp_path).equal


def test_mode_cursor_on_a_table_without_a_cursor_column_is_refused(
    postgres_server: PostgresCluster, tmp_path: Path
) -> None:
    dsn = fresh_database(postgres_server, "nocursor")
    write(
        dsn,
        'create table public.produtos ("IdProduto" integer primary key, "DescNomeProduto" text, '
        '"DescDescricaoProduto" text, "DescCategoriaProduto" text)',
    )
    lake = tmp_path / "lake"
    result = ingest(
        lake, "--source", "loyalty", "--from", "postgres", "--tables", "produtos", "--mode", "cursor", "--dsn", dsn
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "table loyalty.produtos: --mode cursor needs the table's cursor column" in result.stderr
    assert "meta.cursor_column" in result.stderr
    assert not (lake / "raw").exists() and not (lake / "_ingestion" / "loyalty").exists()


def declared(tmp_path: Path, meta: str) -> Table:
    path = tmp_path / "_m__sources.yml"
    path.write_text(
        f"""
version: 2
sources:
  - name: m
    tables:
      - name: orders
        meta: {{primary_key: [id], database_mode: cursor, cursor_column: updated_at{meta}}}
        columns:
          - {{name: id, data_type: integer}}
          - {{name: updated_at, data_type: timestamp}}
""",
        encoding="utf-8",
    )
    return load_catalog([path]).source("m").table("orders")


@pytest.mark.parametrize(
    ("meta", "lag", "key_scan"),
    [("", 0.0, 1), (", cursor_lag: 90", 90.0, 1), (", cursor_lag: 5m, cursor_key_scan: 24", 300.0, 24)],
)
def test_a_cursor_declares_its_lag_and_key_scan(tmp_path: Path, meta: str, lag: float, key_scan: int) -> None:
    table = declared(tmp_path, meta)
    assert (table.cursor_lag, table.cursor_key_scan) == (lag, key_scan)


@pytest.mark.parametrize(("meta", "value"), [(", cursor_lag: -1", -1), (", cursor_lag: 5 minutes", "5 minutes")])
def test_a_bad_cursor_lag_is_refused_by_name(tmp_path: Path, meta: str, value: object) -> None:
    with pytest.raises(BadSettingError) as refused:
        declared(tmp_path, meta)
    assert (refused.value.where, refused.value.value) == ("_m__sources.yml: table m.orders: meta.cursor_lag", value)


@pytest.mark.parametrize(("meta", "value"), [(", cursor_key_scan: 0", 0), (", cursor_key_scan: true", True)])
def test_a_bad_cursor_key_scan_is_refused_by_name(tmp_path: Path, meta: str, value: object) -> None:
    with pytest.raises(DeclarationError) as refused:
        declared(tmp_path, meta)
    error = refused.value
    assert (error.where, error.setting, error.value) == (
        "_m__sources.yml: table m.orders",
        "meta.cursor_key_scan",
        value,
    )
