"""The snapshot diff: operations, null-safety, composite keys, key errors, stable types, and previous states
made of a snapshot and the change files stored on top of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion import cdc
from ingestion.catalog import Column, Table
from ingestion.errors import BadKeyError, BaselineMismatchError
from ingestion.readers.base import Snapshot, parquet_snapshot

AT = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def make_table(key: tuple[str, ...] = ("id",)) -> Table:
    columns = [("id", "integer"), ("region", "varchar"), ("name", "varchar"), ("points", "bigint")]
    return Table(
        source="test",
        name="people",
        columns=tuple(Column(n, t) for n, t in columns),
        primary_key=key,
    )


def write(path: Path, table: Table, rows: list[tuple[object, ...]]) -> Path:
    data = {c.name: [r[i] for r in rows] for i, c in enumerate(table.columns)}
    pq.write_table(pa.table(data, schema=table.schema), path)
    return path


def base(path: Path, *deltas: Path, rows: int | None = None) -> cdc.Baseline:
    """A previous state of one snapshot file (and change files on top), holding the rows its file says."""
    return cdc.Baseline(path, deltas, pq.read_metadata(path).num_rows if rows is None else rows)


def read_changes(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: int(str(r["_cdc_sequence"])))


def test_full_load_is_all_inserts_with_sequences(tmp_path: Path) -> None:
    table = make_table()
    snap = write(tmp_path / "s.parquet", table, [(2, "n", "b", 5), (1, "s", "a", None)])
    result = cdc.full_load(table, parquet_snapshot(snap), AT, 7, tmp_path / "out.parquet")
    rows = read_changes(tmp_path / "out.parquet")
    assert result.counts == cdc.ChangeCounts(2, 0, 0)
    assert result.last_sequence == 8
    # in the snapshot's own order: the next diff joins two files in the same order (and nothing is sorted)
    assert [(r["_cdc_operation"], r["_cdc_sequence"], r["id"]) for r in rows] == [("I", 7, 2), ("I", 8, 1)]
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [2, 1]
    assert rows[0]["_cdc_timestamp"] == AT


def test_diff_finds_inserts_updates_deletes_and_carries_last_row_on_delete(tmp_path: Path) -> None:
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, "s", "a", 1), (2, "n", "b", 2), (3, "n", "c", 3)])
    new = write(tmp_path / "new.parquet", table, [(1, "s", "a", 1), (2, "n", "b", 20), (4, "s", "d", 4)])
    result = cdc.diff(table, base(old), parquet_snapshot(new), AT, 100, tmp_path / "out.parquet")
    rows = read_changes(tmp_path / "out.parquet")
    ops = {(r["_cdc_operation"], r["id"]): r for r in rows}
    assert set(ops) == {("U", 2), ("D", 3), ("I", 4)}
    assert ops[("U", 2)]["points"] == 20
    assert ops[("D", 3)]["name"] == "c"  # the delete carries the last known row
    assert [r["_cdc_sequence"] for r in rows] == [100, 101, 102]
    assert result.counts == cdc.ChangeCounts(1, 1, 1)
    assert result.snapshot_rows == 3


def test_nulls_in_both_snapshots_are_not_a_change(tmp_path: Path) -> None:
    table = make_table()
    rows = [(1, None, None, None), (2, "n", None, 5)]
    old = write(tmp_path / "old.parquet", table, rows)
    new = write(tmp_path / "new.parquet", table, rows)
    result = cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    assert result.counts.total == 0
    assert not (tmp_path / "out.parquet").exists()


def test_null_to_value_and_value_to_null_are_updates(tmp_path: Path) -> None:
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, None, "a", 1), (2, "n", "b", 2)])
    new = write(tmp_path / "new.parquet", table, [(1, "s", "a", 1), (2, "n", None, 2)])
    result = cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    assert result.counts == cdc.ChangeCounts(0, 2, 0)


def test_composite_key_distinguishes_rows_sharing_one_part(tmp_path: Path) -> None:
    table = make_table(key=("id", "region"))
    old = write(tmp_path / "old.parquet", table, [(1, "n", "a", 1), (1, "s", "b", 2)])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", 10), (1, "e", "c", 3)])
    cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    got = {(r["_cdc_operation"], r["id"], r["region"]) for r in read_changes(tmp_path / "out.parquet")}
    assert got == {("U", 1, "n"), ("D", 1, "s"), ("I", 1, "e")}


def test_duplicate_keys_are_an_error_naming_the_keys(tmp_path: Path) -> None:
    table = make_table(key=("id", "region"))
    old = write(tmp_path / "old.parquet", table, [(1, "n", "a", 1)])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", 1), (1, "n", "b", 2), (2, "s", "c", 3)])
    with pytest.raises(BadKeyError) as refused:
        cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    error = refused.value
    assert (error.table, error.key, error.repeated, error.null_rows) == ("test.people", ("id", "region"), 1, 0)
    assert error.examples == "id=1, region='n' (2 rows)"
    assert not (tmp_path / "out.parquet").exists()


def test_null_keys_are_an_error(tmp_path: Path) -> None:
    table = make_table()
    snap = write(tmp_path / "s.parquet", table, [(None, "n", "a", 1), (2, "s", "b", 2)])
    with pytest.raises(BadKeyError) as refused:
        cdc.full_load(table, parquet_snapshot(snap), AT, 1, tmp_path / "out.parquet")
    error = refused.value
    assert (error.table, error.key, error.null_rows, error.repeated) == ("test.people", ("id",), 1, 0)


def test_change_file_schema_is_explicit_and_stable_even_for_all_null_columns(tmp_path: Path) -> None:
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, None, None, None)])
    new = write(tmp_path / "new.parquet", table, [(2, None, None, None)])
    cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert schema.names == [
        "_cdc_operation",
        "_cdc_timestamp",
        "_cdc_sequence",
        "id",
        "region",
        "name",
        "points",
    ]
    assert schema.field("_cdc_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("_cdc_sequence").type == pa.int64()
    assert schema.field("id").type == pa.int32()
    assert schema.field("name").type == pa.string()
    assert schema.field("points").type == pa.int64()
    metadata = pq.ParquetFile(tmp_path / "out.parquet").metadata
    assert metadata.row_group(0).column(0).compression == "SNAPPY"
    # OPTIONAL whatever the batch holds (DuckDB would mark a column without NULLs REQUIRED)
    assert all(field.nullable for field in schema)


def test_change_files_are_written_in_sequence_order(tmp_path: Path) -> None:
    table = make_table()
    rows = [(i, "n", f"x{i}", i) for i in range(5000)]
    old = write(tmp_path / "old.parquet", table, rows[::2])
    new = write(tmp_path / "new.parquet", table, [(i, r, n, p + 1) for i, r, n, p in rows[::3]])
    cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    sequences = pq.read_table(tmp_path / "out.parquet").column("_cdc_sequence").to_pylist()
    assert sequences == sorted(sequences) and len(sequences) > 3000
    full = write(tmp_path / "full.parquet", table, rows)
    cdc.full_load(table, parquet_snapshot(full), AT, 1, tmp_path / "load.parquet")
    assert pq.read_schema(tmp_path / "load.parquet") == pq.read_schema(tmp_path / "out.parquet")


def test_a_newly_declared_column_reads_as_null_in_the_previous_snapshot(tmp_path: Path) -> None:
    table = make_table()
    before = Table(source="test", name="people", columns=table.columns[:3], primary_key=("id",))
    old = write(tmp_path / "old.parquet", before, [(1, "n", "a"), (2, "s", "b")])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", None), (2, "s", "b", 7)])
    result = cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    rows = read_changes(tmp_path / "out.parquet")
    assert result.counts == cdc.ChangeCounts(0, 1, 0)
    assert [(r["_cdc_operation"], r["id"], r["points"]) for r in rows] == [("U", 2, 7)]


def test_a_key_of_the_previous_snapshot_repeated_in_the_new_one_is_named(tmp_path: Path) -> None:
    # the repeated key exists in the previous snapshot and both copies equal it: the diff writes no row for it,
    # only the row count tells
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, "n", "a", 1), (2, "s", "b", 2)])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", 1), (1, "n", "a", 1), (2, "s", "b", 2)])
    with pytest.raises(BadKeyError) as caught:
        cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    assert caught.value.key == ("id",) and caught.value.repeated == 1
    assert caught.value.examples == "id=1 (2 rows)"
    assert not (tmp_path / "out.parquet").exists()


def test_a_row_the_reader_did_not_yield_is_never_a_delete(tmp_path: Path) -> None:
    # a parser that skips a row (DuckDB drops an over-long last CSV line) must not publish its key as deleted
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, "n", "a", 1), (2, "s", "b", 2)])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", 1)])
    skipped = Snapshot(f"read_parquet('{new}')", lambda: 2)
    with pytest.raises(BaselineMismatchError) as refused:
        cdc.diff(table, base(old), skipped, AT, 1, tmp_path / "out.parquet")
    error = refused.value
    assert (error.table, error.recorded_rows, error.key) == ("test.people", 2, ("id",))
    assert not (tmp_path / "out.parquet").exists()


def test_a_skipped_row_sends_the_snapshot_to_its_careful_reader(tmp_path: Path) -> None:
    table = make_table()
    old = write(tmp_path / "old.parquet", table, [(1, "n", "a", 1), (2, "s", "b", 2)])
    partial = write(tmp_path / "partial.parquet", table, [(1, "n", "a", 1)])
    whole = write(tmp_path / "whole.parquet", table, [(1, "n", "a", 1), (2, "s", "b", 3)])
    careful = Snapshot(f"read_parquet('{partial}')", lambda: 2, careful=lambda: parquet_snapshot(whole))
    result = cdc.diff(table, base(old), careful, AT, 1, tmp_path / "out.parquet")
    assert result.counts == cdc.ChangeCounts(0, 1, 0)
    assert [(r["_cdc_operation"], r["id"]) for r in read_changes(tmp_path / "out.parquet")] == [("U", 2)]


def test_a_changed_column_type_compares_as_the_new_type(tmp_path: Path) -> None:
    table = make_table()
    as_text = Table(
        source="test",
        name="people",
        columns=(*table.columns[:3], Column("points", "varchar")),
        primary_key=("id",),
    )
    old = write(tmp_path / "old.parquet", as_text, [(1, "n", "a", "5"), (2, "s", "b", "x")])
    new = write(tmp_path / "new.parquet", table, [(1, "n", "a", 5), (2, "s", "b", 6)])
    result = cdc.diff(table, base(old), parquet_snapshot(new), AT, 1, tmp_path / "out.parquet")
    assert [(r["_cdc_operation"], r["id"], r["points"]) for r in read_changes(tmp_path / "out.parquet")] == [
        ("U", 2, 6)
    ]
    assert result.counts == cdc.ChangeCounts(0, 1, 0)


def test_a_snapshot_with_change_files_on_top_diffs_like_the_whole_snapshot(tmp_path: Path) -> None:
    """Store each diff's change file as the next state, three times over, and diff against the chain: the
    same changes as against the full snapshot of the same state, deletes and re-inserts included."""
    table = make_table()
    states = [
        [(1, "n", "a", 1), (2, "s", "b", 2), (3, "n", "c", 3)],
        [(1, "n", "a", 10), (3, "n", "c", 3), (4, "s", "d", 4)],  # 2 deleted, 1 updated, 4 inserted
        [(1, "n", "a", 10), (2, "s", "B", 2), (4, "s", "d", 40)],  # 2 back, 3 deleted, 4 updated
        [(2, "s", "B", 2), (4, "s", "d", 40), (5, "n", "e", None)],  # 1 deleted, 5 inserted
        [(1, "n", "z", 1), (2, "s", "B", 2), (5, "n", "e", 5)],
    ]
    files = [write(tmp_path / f"s{i}.parquet", table, rows) for i, rows in enumerate(states)]
    deltas: list[Path] = []
    sequence = 1
    for i in range(1, len(states)):
        chained = base(files[0], *deltas, rows=len(states[i - 1]))
        out = tmp_path / f"chain{i}.parquet"
        result = cdc.diff(table, chained, parquet_snapshot(files[i]), AT, sequence, out)
        direct = tmp_path / f"direct{i}.parquet"
        cdc.diff(table, base(files[i - 1]), parquet_snapshot(files[i]), AT, sequence, direct)
        assert read_changes(out) == read_changes(direct), i
        sequence = result.last_sequence + 1
        deltas.append(out)
