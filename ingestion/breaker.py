"""The circuit breaker: a capture that would delete or drop too much of a table is held, not published.

A truncated download or a half-written export is the likeliest way a lake loses data: diffed against the last
snapshot, every missing row becomes a delete. A capture over the table's thresholds (`meta.circuit_breaker`)
is therefore kept aside, whole, under `_ingestion/<source>/<table>/held/`:

  held/<capture id>.json             the capture record and the state it was diffed against
  held/<capture id>.changes.parquet  its change file
  held/<capture id>.snapshot.parquet its snapshot

and the run exits 6 with the lake's data and state unchanged. `python -m ingestion approve <source>.<table>`
publishes the held capture as it was; `run --allow-mass-delete` publishes such a capture at once. A later run
that no longer trips publishes normally and drops what was held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ingestion.catalog import Table
from ingestion.errors import LakeError, LakeStateError, UsageError
from ingestion.state import CaptureRecord, TableState
from ingestion.table_store import TableStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Why a capture is held: the counts and the thresholds they crossed."""

    table: str
    previous_rows: int
    rows: int
    deletes: int
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"table {self.table}: the capture would delete {self.deletes} of {self.previous_rows} rows and leave "
            f"{self.rows}; {' and '.join(self.reasons)}"
        )


def judge(table: Table, previous_rows: int, rows: int, deletes: int) -> Verdict | None:
    """A Verdict when the capture crosses the table's thresholds; None when it may be published."""
    breaker = table.breaker
    if previous_rows < breaker.min_rows or previous_rows == 0:
        return None
    reasons = []
    deleted = deletes / previous_rows
    if deleted > breaker.max_deleted_share:
        reasons.append(f"{deleted:.0%} deleted is over the threshold of {breaker.max_deleted_share:.0%}")
    dropped = (previous_rows - rows) / previous_rows
    if dropped > breaker.max_row_drop_share:
        reasons.append(f"a {dropped:.0%} drop in rows is over the threshold of {breaker.max_row_drop_share:.0%}")
    if not reasons:
        return None
    return Verdict(table.qualified_name, previous_rows, rows, deletes, tuple(reasons))


@dataclass(frozen=True)
class Held:
    record: CaptureRecord
    base_snapshot: str | None  # the snapshot the capture was diffed against
    base_sequence: int
    verdict: str

    def to_json(self) -> bytes:
        body = {
            "record": asdict(self.record),
            "base_snapshot": self.base_snapshot,
            "base_sequence": self.base_sequence,
            "verdict": self.verdict,
        }
        return json.dumps(body, indent=1).encode()


def hold(store: TableStore, state: TableState, record: CaptureRecord, data: Path, snapshot: Path, verdict: str) -> str:
    """Keep a capture aside, replacing whatever was held for the table before; returns its record's key."""
    lake = store.lake
    store.drop_held()
    base = f"{store.held_prefix}{record.capture_id}"
    lake.publish(data, f"{base}.changes.parquet")
    lake.publish(snapshot, f"{base}.snapshot.parquet")
    lake.put_bytes(f"{base}.json", Held(record, state.snapshot_key, state.last_sequence, verdict).to_json())
    return f"{base}.json"


def load_held(store: TableStore) -> tuple[Held, str] | None:
    """The held capture of the table and its key prefix, or None."""
    lake, table = store.lake, store.table
    records = [o.key for o in lake.list(store.held_prefix) if o.key.endswith(".json")]
    if not records:
        return None
    key = records[-1]
    raw = lake.read_bytes(key)
    try:
        body = json.loads(raw or b"")
        held = Held(
            CaptureRecord.from_json(body["record"], lake.uri_for(key), "record"),
            body["base_snapshot"],
            int(body["base_sequence"]),
            str(body["verdict"]),
        )
    except (ValueError, KeyError, TypeError, LakeError) as exc:
        raise LakeStateError(
            table.qualified_name,
            f"the held capture {lake.uri_for(key)} is unreadable ({exc})",
            f"remove {store.held_prefix} and capture the table again",
        ) from exc
    return held, key.removesuffix(".json")


def held_files(store: TableStore, workdir: Path) -> tuple[Held, Path, Path]:
    """Download the held capture of the table for publishing; UsageError when nothing is held."""
    lake = store.lake
    found = load_held(store)
    if found is None:
        raise UsageError(f"table {store.table.qualified_name}: no capture is held; nothing to approve")
    held, base = found
    data = lake.download(f"{base}.changes.parquet", workdir / "changes.parquet")
    snapshot = lake.download(f"{base}.snapshot.parquet", workdir / "snapshot.parquet")
    return held, data, snapshot
