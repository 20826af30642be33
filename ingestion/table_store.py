"""One owner for a table's lake state, in the manner of dlt's `PackageStorage`: the layout, the documents
(`state.json`, `pending.json`) and every step a capture goes through — stage, decide, publish, commit, settle,
clean up. Snapshot captures (`capture.py`) and event batches (`events.py`) only prepare a `PreparedCapture`;
this class does the rest, in the one order that makes a crash harmless:

1. the new snapshot (or fingerprint set) and a copy of the change file are staged under `_ingestion/`
   (write-once, invisible to dbt);
2. `pending.json` records the capture (its id, sequences and counts): from here on the capture is decided;
3. the change file is published under `raw/` (write-once, atomic);
4. `state.json` advances (one atomic write);
5. `pending.json`, the staged copy and the previous snapshot are removed.

A run first settles what a crashed run left: a pending capture is completed exactly as the crashed run would
have (its change file published from the staged copy if it was not yet); files staged without a `pending.json`
are dropped and the table is captured again.

Layout, per table `<source>/<table>`:
  raw/<source>/<kind>/<table>/<table>_<id>.parquet     published data (kind: full-load, cdc, events)
  _ingestion/<source>/<table>/state.json               last sequence, current snapshot, capture log
  _ingestion/<source>/<table>/pending.json             a decided capture, not yet committed (with the SHA-256 of
                                                       its change file, checked before a rerun publishes it)
  _ingestion/<source>/<table>/snapshots/<id>.parquet   the snapshot the next capture is diffed against
  _ingestion/<source>/<table>/published/<id>.parquet   events: fingerprints of the rows already published
  _ingestion/<source>/<table>/staged/<id>.parquet      a pending capture's change file, until it is published
  _ingestion/<source>/<table>/held/<id>.*              a capture the circuit breaker held (see `breaker.py`)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ingestion.catalog import Table
from ingestion.config import armed_failpoint
from ingestion.errors import CorruptCaptureError, LakeStateError, StateFileError
from ingestion.lake import STATE_PREFIX, Lake
from ingestion.state import CaptureRecord, DataKind, TableState, parse_record
from ingestion.verdict import Verdict

log = logging.getLogger(__name__)

DATA_KINDS: tuple[DataKind, ...] = ("full-load", "cdc", "events")
# folders holding staged files: CDC snapshots, event fingerprint sets, change files of pending captures
STAGED_FOLDERS = ("snapshots", "published", "staged")


def failpoint(name: str) -> None:
    """Crash the process here when the reliability tests ask for it (LAGO_FAILPOINT=<name>)."""
    if armed_failpoint() == name:
        log.error("failpoint %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class PreparedCapture:
    """A capture read, checked and diffed locally, not yet published."""

    table: Table
    state: TableState
    record: CaptureRecord
    data: Path | None  # the file to publish at record.data_key
    staged: Path | None  # the snapshot (or fingerprint set) to stage at record.snapshot_key
    started: float
    verdict: Verdict | None = None  # set when the circuit breaker holds the capture


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parquet_rows(path: Path) -> int:
    """The row count in a Parquet file's footer; ValueError when the file is not readable Parquet."""
    import pyarrow as pa  # the engine's libraries load only for commands that publish
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


@dataclass(frozen=True)
class FileCheck:
    """What a file kept for later publishing was when it was kept: its rows and the SHA-256 of its bytes."""

    rows: int
    sha256: str | None  # None: kept by a version that did not record it; the rows are still checked

    @classmethod
    def of(cls, path: Path) -> FileCheck:
        return cls(parquet_rows(path), sha256_of(path))

    def verify(self, table: Table, uri: str, path: Path) -> None:
        """CorruptCaptureError unless the file at `path` (downloaded from `uri`) is readable Parquet with the
        recorded rows and bytes. Cheap: the footer and one pass over the bytes, no decoding."""
        try:
            rows = parquet_rows(path)
        except ValueError as exc:
            raise CorruptCaptureError(table.qualified_name, uri, f"is not readable Parquet ({exc})") from None
        if rows != self.rows:
            raise CorruptCaptureError(
                table.qualified_name, uri, f"holds {rows} rows where the capture recorded {self.rows}"
            )
        if self.sha256 is not None:
            found = sha256_of(path)
            if found != self.sha256:
                raise CorruptCaptureError(
                    table.qualified_name,
                    uri,
                    f"has other bytes than were captured (SHA-256 {found}, recorded {self.sha256})",
                )


def change_rows(record: CaptureRecord) -> int:
    """The rows of a capture's change file: one sequence number each."""
    return record.last_sequence - record.first_sequence + 1


class TableStore:
    """A table's state in one lake."""

    def __init__(self, lake: Lake, table: Table) -> None:
        self.lake = lake
        self.table = table
        self.prefix = f"{STATE_PREFIX}/{table.source}/{table.name}"
        self.state_key = f"{self.prefix}/state.json"
        self.pending_key = f"{self.prefix}/pending.json"
        self.held_prefix = f"{self.prefix}/held/"

    # -- layout -------------------------------------------------------------------------------------------------

    def data_key(self, kind: DataKind, capture_id: str) -> str:
        return f"raw/{self.table.source}/{kind}/{self.table.name}/{self.table.name}_{capture_id}.parquet"

    def snapshot_key(self, capture_id: str) -> str:
        return f"{self.prefix}/snapshots/{capture_id}.parquet"

    def fingerprints_key(self, batch_id: str) -> str:
        return f"{self.prefix}/published/{batch_id}.parquet"

    def staged_data_key(self, capture_id: str) -> str:
        return f"{self.prefix}/staged/{capture_id}.parquet"

    def published_keys(self) -> list[str]:
        """Every file published under raw/ for the table."""
        table = self.table
        return [o.key for kind in DATA_KINDS for o in self.lake.list(f"raw/{table.source}/{kind}/{table.name}/")]

    def repair_hint(self) -> str:
        table = self.table
        return (
            f"move raw/{table.source}/*/{table.name}/ and {self.prefix}/ out of the lake and rebuild dbt with "
            "--full-refresh (see docs/operations.md)"
        )

    # -- documents ----------------------------------------------------------------------------------------------

    def load_state(self) -> TableState:
        """The table's state; a table without `state.json` but with published data is an error, never a new
        table: starting over would publish a second full load with sequences from 1, and the delete of every
        row removed in the meantime would never be published."""
        raw = self.lake.read_bytes(self.state_key)
        if raw is None:
            pending = self.load_pending()
            # a first capture that crashed after publishing: its pending record accounts for its one file
            unexplained = [k for k in self.published_keys() if pending is None or k != pending.data_key]
            if unexplained:
                raise LakeStateError(
                    self.table.qualified_name,
                    f"{self.lake.uri_for(self.state_key)} is missing, but {len(unexplained)} file(s) are published "
                    f"for the table (e.g. {self.lake.uri_for(unexplained[-1])})",
                    "restore state.json from a backup of the lake; or, to capture the table again from scratch, "
                    + self.repair_hint(),
                )
            return TableState()
        file = self.lake.uri_for(self.state_key)
        state = TableState.from_json(raw, file)
        for name, key in [
            ("snapshot_key", state.snapshot_key),
            *((f"snapshot_deltas[{i}]", k) for i, k in enumerate(state.snapshot_deltas)),
        ]:
            if key is not None and not key.startswith(f"{self.prefix}/"):
                raise StateFileError(file, f"field {name}", key, f"is not a file of this table (under {self.prefix}/)")
        for i, record in enumerate(state.captures):
            self.check_keys(record, file, f"captures[{i}].")
        return state

    def check_keys(self, record: CaptureRecord, file: str, where: str = "") -> None:
        """A record's files are the table's own, named after its capture: a record copied from another table
        (or pointing out of the lake) would make a run read or publish another table's files."""
        own = {self.data_key(kind, record.capture_id) for kind in DATA_KINDS}
        if record.data_key is not None and record.data_key not in own:
            raise StateFileError(
                file, f"field {where}data_key", record.data_key, f"is not the file of capture {record.capture_id}"
            )
        staged = ("", self.snapshot_key(record.capture_id), self.fingerprints_key(record.capture_id))
        if record.snapshot_key not in staged:
            raise StateFileError(
                file,
                f"field {where}snapshot_key",
                record.snapshot_key,
                f"is not the stored file of capture {record.capture_id}",
            )

    def save_state(self, state: TableState) -> None:
        self.lake.put_bytes(self.state_key, state.to_json())

    def load_pending(self) -> CaptureRecord | None:
        raw = self.lake.read_bytes(self.pending_key)
        if raw is None:
            return None
        file = self.lake.uri_for(self.pending_key)
        record = parse_record(raw, file)
        self.check_keys(record, file)
        return record

    def save_pending(self, record: CaptureRecord) -> None:
        self.lake.put_bytes(self.pending_key, json.dumps(asdict(record)).encode())

    def clear_pending(self) -> None:
        self.lake.delete(self.pending_key)

    def drop_held(self) -> None:
        for item in self.lake.list(self.held_prefix):
            self.lake.delete(item.key)

    # -- steps --------------------------------------------------------------------------------------------------

    def stage(self, prepared: PreparedCapture) -> None:
        """Steps 1 and 2: put everything the capture needs under `_ingestion/`, then record it as pending."""
        record = prepared.record
        if prepared.data is not None:
            # what a rerun checks the staged copy against before it publishes it after a crash
            record.data_sha256 = sha256_of(prepared.data)
        if prepared.staged is not None:
            self.lake.publish(prepared.staged, record.snapshot_key, handover=True)
        if prepared.data is not None:
            self.lake.publish(prepared.data, self.staged_data_key(record.capture_id), handover=True)
        failpoint("after-stage-snapshot")
        self.save_pending(record)
        failpoint("after-pending")

    def publish(self, prepared: PreparedCapture) -> CaptureRecord:
        """Steps 3 to 5: publish a staged capture's data, commit, clean up."""
        state, record = prepared.state, prepared.record
        previous = state.snapshot_key
        if record.data_key is not None and prepared.data is not None:
            self.lake.publish(prepared.data, record.data_key, handover=True)
        failpoint("after-publish")
        record.seconds = round(time.monotonic() - prepared.started, 3)
        self.commit(state, record)
        failpoint("after-state")
        self.cleanup(state, previous)
        self.drop_held()  # a capture held earlier is superseded by this one
        return record

    def commit(self, state: TableState, record: CaptureRecord) -> None:
        """Advance the table's state past `record`: one atomic write."""
        state.last_sequence = max(state.last_sequence, record.last_sequence)
        if record.snapshot_key and record.snapshot_delta:
            state.snapshot_deltas.append(record.snapshot_key)
        elif record.snapshot_key:
            state.snapshot_key, state.snapshot_deltas = record.snapshot_key, []
        state.captures.append(record)
        self.save_state(state)

    def cleanup(self, state: TableState, previous: str | None) -> None:
        """Drop the pending marker and every staged file the committed state does not point at: the previous
        snapshot and any left by a run that crashed before it recorded its capture."""
        failpoint("before-cleanup")
        self.clear_pending()
        self.prune_staged(state)
        if previous and previous not in state.snapshot_keys:
            self.lake.delete(previous)

    def prune_staged(self, state: TableState) -> None:
        keep = state.snapshot_keys
        for folder in STAGED_FOLDERS:
            for item in self.lake.list(f"{self.prefix}/{folder}/"):
                if item.key not in keep:
                    self.lake.delete(item.key)

    def settle(self, state: TableState) -> CaptureRecord | None:
        """Finish or discard the capture a crashed run left behind; the record when it was committed now."""
        table, lake = self.table, self.lake
        pending = self.load_pending()
        if pending is None:
            return None
        last = state.last_capture
        if last is not None and last.capture_id >= pending.capture_id:
            log.info(
                "%s: capture %s was already committed; clearing its marker", table.qualified_name, pending.capture_id
            )
            self.cleanup(state, None)
            return None
        if pending.data_key is not None and not lake.exists(pending.data_key):
            staged = self.staged_data_key(pending.capture_id)
            if not lake.exists(staged):
                raise LakeStateError(
                    table.qualified_name,
                    f"interrupted capture {pending.capture_id} has neither its data ({lake.uri_for(pending.data_key)}) "
                    f"nor its staged copy ({lake.uri_for(staged)}); the lake's _ingestion/ folder was changed by hand",
                    "restore the files from a backup of the lake, or " + self.repair_hint(),
                )
            with tempfile.TemporaryDirectory(prefix="lago-recover-") as tmp:
                copy = lake.download(staged, Path(tmp) / "data.parquet")
                FileCheck(change_rows(pending), pending.data_sha256).verify(table, lake.uri_for(staged), copy)
                lake.publish(copy, pending.data_key)
        log.warning("%s: completing interrupted capture %s", table.qualified_name, pending.capture_id)
        previous = state.snapshot_key
        pending.recovered = True
        self.commit(state, pending)
        self.cleanup(state, previous)
        return pending

    def settle_then_continue(self, day: int | None) -> tuple[TableState, CaptureRecord | None]:
        """Settle a crashed capture; the table's state, and the recovered record when it stands for this run.

        A recovered simulator capture of this run's day is this run's capture. Any other recovered capture is
        history: the run goes on to read the source's current state.
        """
        state = self.load_state()
        recovered = self.settle(state)
        if recovered is not None and day is not None and recovered.day == day:
            return state, recovered
        self.prune_staged(state)
        return state, None


def load_state(lake: Lake, table: Table) -> TableState:
    """The table's state, for callers outside the capture engine (a read: nothing is settled or pruned)."""
    return TableStore(lake, table).load_state()
