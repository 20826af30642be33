"""Ingestion state kept in the lake under `_ingestion/`: per-table state, the pending capture, the lock.

Layout, per table `<source>/<table>`:
  _ingestion/<source>/<table>/state.json            last sequence, current snapshot, capture log
  _ingestion/<source>/<table>/pending.json          a capture whose data may be published but not committed
  _ingestion/<source>/<table>/snapshots/<id>.parquet  the snapshot the next capture is diffed against
  _ingestion/<source>/<table>/staged/<id>.parquet     a pending capture's change file, until it is published
and `_ingestion/lock.json`, held by the one run writing to the lake (see `lock.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ingestion.catalog import Table
from ingestion.errors import LakeError, LakeStateError
from ingestion.lake import STATE_PREFIX, Lake

log = logging.getLogger(__name__)

CAPTURE_ID_FORMAT = "%Y%m%d_%H%M%S_%f"

# what one capture of a table was: a first load, a diff with changes, a diff without, an event batch, or none
CaptureKind = Literal["full-load", "cdc", "unchanged", "events", "no-events"]
# the folders under raw/<source>/ that hold published files
DataKind = Literal["full-load", "cdc", "events"]


def capture_id_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(CAPTURE_ID_FORMAT)


def moment_of(capture_id: str) -> datetime:
    return datetime.strptime(capture_id, CAPTURE_ID_FORMAT).replace(tzinfo=UTC)


def table_prefix(table: Table) -> str:
    return f"{STATE_PREFIX}/{table.source}/{table.name}"


def data_key(table: Table, kind: DataKind, capture_id: str) -> str:
    return f"raw/{table.source}/{kind}/{table.name}/{table.name}_{capture_id}.parquet"


def snapshot_key(table: Table, capture_id: str) -> str:
    return f"{table_prefix(table)}/snapshots/{capture_id}.parquet"


@dataclass
class CaptureRecord:
    """One capture of one table, as logged in its state and printed by `status`."""

    capture_id: str
    kind: CaptureKind
    data_key: str | None
    snapshot_key: str
    first_sequence: int
    last_sequence: int
    inserts: int
    updates: int
    deletes: int
    snapshot_rows: int
    reader: str
    day: int | None = None
    seconds: float = 0.0
    recovered: bool = False
    # events: the latest arrival (`_ingested_at`, ISO UTC) published so far, the floor of every later arrival
    last_arrival: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CaptureRecord:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass
class TableState:
    last_sequence: int = 0
    snapshot_key: str | None = None
    captures: list[CaptureRecord] = field(default_factory=list)

    @property
    def last_capture(self) -> CaptureRecord | None:
        return self.captures[-1] if self.captures else None

    def to_json(self) -> bytes:
        body = {
            "last_sequence": self.last_sequence,
            "snapshot_key": self.snapshot_key,
            "captures": [asdict(c) for c in self.captures],
        }
        return json.dumps(body, indent=1).encode()


DATA_KINDS: tuple[DataKind, ...] = ("full-load", "cdc", "events")


def data_keys(lake: Lake, table: Table) -> list[str]:
    """Every file published under raw/ for `table`."""
    return [o.key for kind in DATA_KINDS for o in lake.list(f"raw/{table.source}/{kind}/{table.name}/")]


def load_state(lake: Lake, table: Table) -> TableState:
    """The table's state; a table without `state.json` but with published data is an error, never a new table.

    Starting over would publish a second full load with sequences from 1, and the delete of every row removed
    in the meantime would never be published.
    """
    raw = lake.read_bytes(f"{table_prefix(table)}/state.json")
    if raw is None:
        published = data_keys(lake, table)
        pending = load_pending(lake, table)
        # a first capture that crashed after publishing: its pending record accounts for its one file
        unexplained = [k for k in published if pending is None or k != pending.data_key]
        if unexplained:
            raise LakeStateError(
                table.qualified_name,
                f"{lake.uri_for(table_prefix(table))}/state.json is missing, but {len(unexplained)} file(s) are "
                f"published for the table (e.g. {lake.uri_for(unexplained[-1])})",
                "restore state.json from a backup of the lake; or, to capture the table again from scratch, "
                f"move raw/{table.source}/*/{table.name}/ and {table_prefix(table)}/ out of the lake and rebuild "
                "dbt with --full-refresh (see docs/operations.md)",
            )
        return TableState()
    try:
        body = json.loads(raw)
        return TableState(
            last_sequence=int(body["last_sequence"]),
            snapshot_key=body["snapshot_key"],
            captures=[CaptureRecord.from_json(c) for c in body["captures"]],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"{lake.uri_for(table_prefix(table))}/state.json is unreadable: {exc}") from exc


def save_state(lake: Lake, table: Table, state: TableState) -> None:
    lake.put_bytes(f"{table_prefix(table)}/state.json", state.to_json())


def load_pending(lake: Lake, table: Table) -> CaptureRecord | None:
    raw = lake.read_bytes(f"{table_prefix(table)}/pending.json")
    if raw is None:
        return None
    try:
        return CaptureRecord.from_json(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise LakeError(f"{lake.uri_for(table_prefix(table))}/pending.json is unreadable: {exc}") from exc


def save_pending(lake: Lake, table: Table, record: CaptureRecord) -> None:
    lake.put_bytes(f"{table_prefix(table)}/pending.json", json.dumps(asdict(record)).encode())


def clear_pending(lake: Lake, table: Table) -> None:
    lake.delete(f"{table_prefix(table)}/pending.json")
