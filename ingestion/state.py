"""What a table's state is made of: its capture records and capture ids. Where they live in the lake and how
they change is `table_store.py`'s; the lake's lock is `lock.py`'s."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ingestion.catalog import Table
    from ingestion.lake import Lake

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
    # True when `snapshot_key` holds this capture's change file, applied on top of the table's previous state,
    # rather than a full snapshot (see `cdc.Baseline`)
    snapshot_delta: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CaptureRecord:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass
class TableState:
    last_sequence: int = 0
    # the last full snapshot, and the change files stored as snapshots since (oldest first): together the state
    # the next capture is diffed against
    snapshot_key: str | None = None
    captures: list[CaptureRecord] = field(default_factory=list)
    snapshot_deltas: list[str] = field(default_factory=list)

    @property
    def snapshot_keys(self) -> set[str]:
        """Every stored file the table's state needs."""
        return {k for k in (self.snapshot_key, *self.snapshot_deltas) if k}

    @property
    def delta_rows(self) -> int:
        """Rows in the change files stored on top of the last full snapshot."""
        deltas = set(self.snapshot_deltas)
        return sum(c.inserts + c.updates + c.deletes for c in self.captures if c.snapshot_key in deltas)

    @property
    def last_capture(self) -> CaptureRecord | None:
        return self.captures[-1] if self.captures else None

    def to_json(self) -> bytes:
        body = {
            "last_sequence": self.last_sequence,
            "snapshot_key": self.snapshot_key,
            "snapshot_deltas": self.snapshot_deltas,
            "captures": [asdict(c) for c in self.captures],
        }
        return json.dumps(body, indent=1).encode()


def load_state(lake: Lake, table: Table) -> TableState:
    """The table's state, for callers outside the capture engine; the owner is `TableStore` (imported here, not
    at the top: it builds on this module)."""
    from ingestion.table_store import TableStore

    return TableStore(lake, table).load_state()
