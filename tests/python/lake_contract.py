"""What every lake must do, as one test body for each implementation.

A test module subclasses `LakeContract` and provides a `lake` fixture; see test_lake_local.py and
test_lake_s3.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ingestion.errors import LakeError, OverwriteRefusedError
from ingestion.lake import Lake


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def race(count: int, action: Callable[[int], object]) -> list[object]:
    """Run `action(i)` for i in range(count) on threads released at the same moment; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each racer got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


class LakeContract:
    # -- publish: write-once --------------------------------------------------------------------------------

    def test_publish_creates_the_object(self, lake: Lake, tmp_path: Path) -> None:
        source = write(tmp_path / "a.parquet", b"first version")

        assert lake.publish(source, "cdc/loyalty/clientes/a.parquet") is True

        assert lake.read_bytes("cdc/loyalty/clientes/a.parquet") == b"first version"
        assert lake.exists("cdc/loyalty/clientes/a.parquet")

    def test_publish_of_the_same_bytes_again_is_a_no_op(self, lake: Lake, tmp_path: Path) -> None:
        source = write(tmp_path / "a.parquet", b"same bytes")
        assert lake.publish(source, "k/a.parquet") is True

        copy = write(tmp_path / "copy" / "a.parquet", b"same bytes")
        assert lake.publish(copy, "k/a.parquet") is False
        assert lake.read_bytes("k/a.parquet") == b"same bytes"

    def test_publish_refuses_to_replace_other_bytes(self, lake: Lake, tmp_path: Path) -> None:
        lake.publish(write(tmp_path / "a", b"original"), "k/a.parquet")

        with pytest.raises(OverwriteRefusedError) as refused:
            lake.publish(write(tmp_path / "b", b"something else"), "k/a.parquet")
        assert (refused.value.uri, refused.value.exit_code) == (lake.uri_for("k/a.parquet"), 4)

        assert lake.read_bytes("k/a.parquet") == b"original"

    def test_publish_is_idempotent_for_a_file_larger_than_one_chunk(self, lake: Lake, tmp_path: Path) -> None:
        # SeaweedFS stores objects above 4 MiB as several chunks; the ETag must still be the content MD5.
        big = write(tmp_path / "big.parquet", bytes(range(256)) * (9 * 4096))
        assert lake.publish(big, "k/big.parquet") is True
        assert lake.publish(big, "k/big.parquet") is False
        changed = write(tmp_path / "changed.parquet", big.read_bytes()[:-1] + b"!")
        with pytest.raises(OverwriteRefusedError) as refused:
            lake.publish(changed, "k/big.parquet")
        assert refused.value.uri == lake.uri_for("k/big.parquet")

    def test_racing_publishers_of_different_bytes_leave_one_winner(self, lake: Lake, tmp_path: Path) -> None:
        sources = [write(tmp_path / f"v{i}", f"version {i}".encode()) for i in range(6)]

        results = race(6, lambda i: lake.publish(sources[i], "k/contested.parquet"))

        winners = [i for i, r in enumerate(results) if r is True]
        assert len(winners) == 1, results
        assert all(isinstance(r, OverwriteRefusedError) for i, r in enumerate(results) if i != winners[0]), results
        assert lake.read_bytes("k/contested.parquet") == f"version {winners[0]}".encode()

    # -- create_exclusive: the lock -------------------------------------------------------------------------

    def test_create_exclusive_refuses_an_existing_key(self, lake: Lake) -> None:
        assert lake.create_exclusive("_ingestion/lock", b"run 1") is True
        assert lake.create_exclusive("_ingestion/lock", b"run 2") is False
        assert lake.read_bytes("_ingestion/lock") == b"run 1"

    def test_create_exclusive_succeeds_again_after_delete(self, lake: Lake) -> None:
        assert lake.create_exclusive("_ingestion/lock", b"run 1") is True
        lake.delete("_ingestion/lock")
        assert lake.create_exclusive("_ingestion/lock", b"run 2") is True
        assert lake.read_bytes("_ingestion/lock") == b"run 2"

    def test_only_one_of_racing_lockers_wins(self, lake: Lake) -> None:
        results = race(8, lambda i: lake.create_exclusive("_ingestion/lock", f"run {i}".encode()))

        assert sorted(results, key=str) == [False] * 7 + [True], results
        winner = results.index(True)
        assert lake.read_bytes("_ingestion/lock") == f"run {winner}".encode()

    # -- small state documents ------------------------------------------------------------------------------

    def test_put_bytes_creates_and_replaces(self, lake: Lake) -> None:
        lake.put_bytes("_ingestion/state/loyalty.json", b'{"v": 1}')
        lake.put_bytes("_ingestion/state/loyalty.json", b'{"v": 2}')
        assert lake.read_bytes("_ingestion/state/loyalty.json") == b'{"v": 2}'

    def test_read_bytes_of_a_missing_key_is_none(self, lake: Lake) -> None:
        assert lake.read_bytes("nothing/here.json") is None
        assert not lake.exists("nothing/here.json")

    # -- list -----------------------------------------------------------------------------------------------

    def test_list_returns_the_objects_under_a_prefix_sorted(self, lake: Lake) -> None:
        for key in ("t/b/2.parquet", "t/a/1.parquet", "t/b/1.parquet", "u/1.parquet"):
            lake.put_bytes(key, key.encode())

        listed = lake.list("t/")

        assert [o.key for o in listed] == ["t/a/1.parquet", "t/b/1.parquet", "t/b/2.parquet"]
        assert [o.size for o in listed] == [len(o.key) for o in listed]
        assert all(o.modified.tzinfo is not None for o in listed)
        assert [o.key for o in lake.list("t/b/")] == ["t/b/1.parquet", "t/b/2.parquet"]
        assert lake.list("v/") == []

    def test_list_prefix_is_a_string_prefix_not_a_folder(self, lake: Lake) -> None:
        for key in ("cdc/t/1.parquet", "cdc/t1/1.parquet", "cdc/t.parquet", "cdc/s/1.parquet"):
            lake.put_bytes(key, b"x")

        assert [o.key for o in lake.list("cdc/t")] == ["cdc/t.parquet", "cdc/t/1.parquet", "cdc/t1/1.parquet"]

    def test_list_of_an_exact_key_and_of_everything(self, lake: Lake) -> None:
        lake.put_bytes("a/one", b"1")
        lake.put_bytes("b/two", b"22")

        assert [(o.key, o.size) for o in lake.list("a/one")] == [("a/one", 1)]
        assert {"a/one", "b/two"} <= {o.key for o in lake.list("")}

    # -- delete and download --------------------------------------------------------------------------------

    def test_delete_removes_and_tolerates_a_missing_object(self, lake: Lake) -> None:
        lake.put_bytes("k/x", b"x")
        lake.delete("k/x")
        lake.delete("k/x")
        lake.delete("never/existed")
        assert lake.read_bytes("k/x") is None
        assert lake.list("k/") == []

    def test_download_copies_the_object(self, lake: Lake, tmp_path: Path) -> None:
        lake.publish(write(tmp_path / "src", b"payload"), "k/file.parquet")

        dest = lake.download("k/file.parquet", tmp_path / "dest.parquet")

        assert dest == tmp_path / "dest.parquet"
        assert dest.read_bytes() == b"payload"

    def test_download_of_a_missing_object_is_a_lake_error(self, lake: Lake, tmp_path: Path) -> None:
        with pytest.raises(LakeError):
            lake.download("k/missing.parquet", tmp_path / "dest.parquet")

    def test_uri_for_names_the_object(self, lake: Lake) -> None:
        assert lake.uri_for("k/a.parquet") == lake.uri.rstrip("/") + "/k/a.parquet"
