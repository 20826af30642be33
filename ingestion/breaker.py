"""The circuit breaker: a capture that would delete or drop too much of a table is held, not published.

A truncated download or a half-written export is the likeliest way a lake loses data: diffed against the last
snapshot, every missing row becomes a delete. A capture over the table's thresholds (`meta.circuit_breaker`)
is therefore kept aside, whole, under `_ingestion/<source>/<table>/held/`:

  held/<capture id>.json             the capture record, the state it was diffed against, and the rows and
                                     SHA-256 of both files below
  held/<capture id>.changes.parquet  its change file
  held/<capture id>.snapshot.parquet its snapshot

and the run exits 6 with the lake's data and state unchanged. `python -m ingestion approve <source>.<table>`
publishes the held capture as it was, once both files are verified to be the ones held (readable Parquet, same
rows, same bytes); a file changed since is refused (exit 4) and nothing is published. `run --allow-mass-delete`
publishes such a capture at once. A later run that no longer trips publishes normally and drops what was held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ingestion.errors import NothingHeldError, StateFileError
from ingestion.state import (
    CaptureRecord,
    TableState,
    check_count,
    check_optional,
    check_sha256,
    check_text,
    parse_json,
    required,
)
from ingestion.table_store import FileCheck, TableStore, change_rows

log = logging.getLogger(__name__)


HELD_FILES = ("changes", "snapshot")  # held/<capture id>.<name>.parquet


@dataclass(frozen=True)
class Held:
    record: CaptureRecord
    base_snapshot: str | None  # the snapshot the capture was diffed against
    base_sequence: int
    verdict: str
    # per file of HELD_FILES, what it was when held; empty for a capture held by a version that did not record it
    checks: dict[str, FileCheck] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {
            "record": asdict(self.record),
            "base_snapshot": self.base_snapshot,
            "base_sequence": self.base_sequence,
            "verdict": self.verdict,
            "files": {name: asdict(check) for name, check in self.checks.items()},
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, file: str) -> Held:
        """A held capture's record as read from `file`, checked like every state document (see `state.py`)."""
        body = parse_json(raw, file)
        record = CaptureRecord.from_json(required(body, "record", file), file, "record")
        base_sequence = check_count(required(body, "base_sequence", file), file, "field base_sequence")
        verdict = check_text(required(body, "verdict", file), file, "field verdict")
        base_snapshot = check_optional(check_text)(body.get("base_snapshot"), file, "field base_snapshot")
        files = body.get("files", {})
        if not isinstance(files, dict):
            raise StateFileError(file, "field files", files, "is not a JSON object")
        checks: dict[str, FileCheck] = {}
        for name, check in files.items():
            where = f"field files.{name}"
            if name not in HELD_FILES or not isinstance(check, dict):
                raise StateFileError(file, where, check, f"is not the check of a held file ({', '.join(HELD_FILES)})")
            checks[name] = FileCheck(
                check_count(required(check, "rows", file, f"files.{name}."), file, f"{where}.rows"),
                check_sha256(required(check, "sha256", file, f"files.{name}."), file, f"{where}.sha256"),
            )
        return cls(record, base_snapshot, base_sequence, verdict, checks)


def hold(store: TableStore, state: TableState, record: CaptureRecord, data: Path, snapshot: Path, verdict: str) -> str:
    """Keep a capture aside, replacing whatever was held for the table before; returns its record's key."""
    lake = store.lake
    store.drop_held()
    base = f"{store.held_prefix}{record.capture_id}"
    checks = {"changes": FileCheck.of(data), "snapshot": FileCheck.of(snapshot)}
    lake.publish(data, f"{base}.changes.parquet")
    lake.publish(snapshot, f"{base}.snapshot.parquet")
    held = Held(record, state.snapshot_key, state.last_sequence, verdict, checks)
    lake.put_bytes(f"{base}.json", held.to_json())
    return f"{base}.json"


def load_held(store: TableStore) -> tuple[Held, str] | None:
    """The held capture of the table and its key prefix, or None; StateFileError when its record is not what
    ingestion writes."""
    lake = store.lake
    records = [o.key for o in lake.list(store.held_prefix) if o.key.endswith(".json")]
    if not records:
        return None
    key = records[-1]
    raw = lake.read_bytes(key)
    if raw is None:
        return None  # dropped by a run that superseded it since the listing
    file = lake.uri_for(key)
    held = Held.from_json(raw, file)
    store.check_keys(held.record, file, "record.")
    return held, key.removesuffix(".json")


def held_files(store: TableStore, workdir: Path) -> tuple[Held, Path, Path]:
    """Download the held capture of the table for publishing, each file verified to be the one held (readable
    Parquet, its rows, its bytes): CorruptCaptureError otherwise, UsageError when nothing is held."""
    lake, table = store.lake, store.table
    found = load_held(store)
    if found is None:
        raise NothingHeldError(table.qualified_name)
    held, base = found
    paths = []
    for name in HELD_FILES:
        key = f"{base}.{name}.parquet"
        path = lake.download(key, workdir / f"{name}.parquet")
        # a capture held by an older version recorded no checks: its change file still has one row per sequence
        check = held.checks.get(name)
        if check is None and name == "changes":
            check = FileCheck(change_rows(held.record), None)
        if check is not None:
            check.verify(table, lake.uri_for(key), path)
        paths.append(path)
    return held, paths[0], paths[1]
