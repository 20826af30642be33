"""What a table's state is made of: its capture records and capture ids. Where they live in the lake and how
they change is `table_store.py`'s; the lake's lock is `lock.py`'s."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from ingestion.errors import MISSING, StateFileError

log = logging.getLogger(__name__)

CAPTURE_ID_FORMAT = "%Y%m%d_%H%M%S_%f"

# what one capture of a table was: a first load, a diff with changes, a diff without, an event batch, or none
CaptureKind = Literal["full-load", "cdc", "unchanged", "events", "no-events"]
# the folders under raw/<source>/ that hold published files
DataKind = Literal["full-load", "cdc", "events"]


CAPTURE_KINDS: tuple[str, ...] = get_args(CaptureKind)
# the `reader` of a log mode capture (`log_capture.py`): `status` reports the slot of a source that has them
LOG_READER = "postgres-log"
_CAPTURE_ID = re.compile(r"\d{8}_\d{6}_\d{6}")


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
    # SHA-256 of the change file's bytes, recorded when the capture is staged: a staged copy published after a
    # crash must be the file that was decided (None in records written before it was recorded)
    data_sha256: str | None = None
    # what the reader asked to keep for its next capture of the table (a database cursor's window), as the reader
    # wrote it: the engine stores it with the capture, so it moves on exactly when the capture is committed
    reader_state: dict[str, Any] | None = None
    # log mode: the position in the source's write-ahead log (an LSN, `16/B374D848`) the capture holds every
    # change up to; a later run skips the transactions that end at or before it (None: not a log capture)
    log_position: str | None = None
    # a database capture: the consistent cut of the source it was read in (`postgres:<system id>/<database
    # oid>/<snapshot>`, the same for every table read in one snapshot, so equal cuts are one state of the database);
    # None for a file source, which holds no cut across tables, and for a capture that may miss deletes (see
    # `readers/postgres.py`). dbt makes an orphan between two tables of one cut an error (docs/dbt.md)
    cut: str | None = None

    @classmethod
    def from_json(cls, raw: object, file: str, where: str = "") -> CaptureRecord:
        """A record read from `file` (at `where` in it), every field checked: StateFileError naming the file and
        the field when one is missing or not what ingestion writes. Unknown fields are ignored (a newer
        version's additions)."""
        body = _object(raw, file, where or "the document")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = f"{where}.{spec.name}" if where else spec.name
            if spec.name not in body:
                if spec.default is NO_DEFAULT:
                    raise StateFileError(file, f"field {name}", MISSING, "is missing")
                continue
            values[spec.name] = _RECORD_FIELDS[spec.name](body[spec.name], file, f"field {name}")
        record = cls(**values)
        if record.first_sequence > record.last_sequence + 1:
            raise StateFileError(
                file,
                f"field {where + '.' if where else ''}first_sequence",
                record.first_sequence,
                f"is past last_sequence {record.last_sequence} + 1",
            )
        return record


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
    def log_position(self) -> str | None:
        """Log mode: the position the table's captures hold every change up to (its latest capture's)."""
        return next((c.log_position for c in reversed(self.captures) if c.log_position is not None), None)

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

    @classmethod
    def from_json(cls, raw: bytes, file: str) -> TableState:
        """A `state.json` as read from `file`; StateFileError naming the file and the field when it is not what
        ingestion writes (not JSON, a missing field, a wrong type, an unknown kind, an id that is not a time)."""
        body = _object(_json(raw, file), file, "the document")
        for name in ("last_sequence", "snapshot_key", "captures"):
            if name not in body:
                raise StateFileError(file, f"field {name}", MISSING, "is missing")
        captures = body["captures"]
        if not isinstance(captures, list):
            raise StateFileError(file, "field captures", captures, "is not a list")
        deltas = body.get("snapshot_deltas", [])
        if not isinstance(deltas, list):
            raise StateFileError(file, "field snapshot_deltas", deltas, "is not a list")
        state = cls(
            last_sequence=check_count(body["last_sequence"], file, "field last_sequence"),
            snapshot_key=check_optional(check_text)(body["snapshot_key"], file, "field snapshot_key"),
            captures=[CaptureRecord.from_json(c, file, f"captures[{i}]") for i, c in enumerate(captures)],
            snapshot_deltas=[check_text(k, file, f"field snapshot_deltas[{i}]") for i, k in enumerate(deltas)],
        )
        for i, record in enumerate(state.captures):
            if record.last_sequence > state.last_sequence:
                raise StateFileError(
                    file,
                    f"field captures[{i}].last_sequence",
                    record.last_sequence,
                    f"is past the table's last_sequence {state.last_sequence}",
                )
        return state


# -- reading the documents: every value checked, the first bad one named ----------------------------------------

Check = Callable[[object, str, str], Any]


def _json(raw: bytes, file: str) -> object:
    try:
        return json.loads(raw)
    except ValueError as exc:  # also a UnicodeDecodeError
        raise StateFileError(file, "the document", MISSING, f"is not JSON ({exc})") from None


def _object(raw: object, file: str, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StateFileError(file, name, raw, "is not a JSON object")
    return raw


def check_count(value: object, file: str, name: str) -> int:
    # bool is an int to Python; a true/false where a count belongs is a hand edit, not a count
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateFileError(file, name, value, "is not a whole number, 0 or more")
    return value


def check_text(value: object, file: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise StateFileError(file, name, value, "is not a non-empty text")
    return value


def _flag(value: object, file: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise StateFileError(file, name, value, "is not true or false")
    return value


def _seconds(value: object, file: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise StateFileError(file, name, value, "is not a number of seconds")
    return float(value)


def _capture_id(value: object, file: str, name: str) -> str:
    text = check_text(value, file, name)
    try:
        if not _CAPTURE_ID.fullmatch(text):
            raise ValueError(text)
        moment_of(text)
    except ValueError:
        raise StateFileError(file, name, value, "is not a capture id (a UTC time as YYYYMMDD_HHMMSS_ffffff)") from None
    return text


def _kind(value: object, file: str, name: str) -> str:
    if value not in CAPTURE_KINDS:
        raise StateFileError(file, name, value, f"is not a kind of capture ({', '.join(CAPTURE_KINDS)})")
    return str(value)


def _instant(value: object, file: str, name: str) -> str:
    text = check_text(value, file, name)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise StateFileError(file, name, value, "is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise StateFileError(file, name, value, "is a time without a time zone")
    return text


def check_sha256(value: object, file: str, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise StateFileError(file, name, value, "is not a SHA-256 (64 hex digits)")
    return value


def _lsn(value: object, file: str, name: str) -> str:
    text = check_text(value, file, name)
    if not re.fullmatch(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}", text):
        raise StateFileError(file, name, value, "is not a log position (an LSN such as 16/B374D848)")
    return text


def check_optional(check: Check) -> Check:
    def optional(value: object, file: str, name: str) -> Any:
        return None if value is None else check(value, file, name)

    return optional


# how each field of a CaptureRecord is read; a test checks that every field has its entry
_RECORD_FIELDS: dict[str, Check] = {
    "capture_id": _capture_id,
    "kind": _kind,
    "data_key": check_optional(check_text),
    "snapshot_key": lambda value, file, name: "" if value == "" else check_text(value, file, name),
    "first_sequence": check_count,
    "last_sequence": check_count,
    "inserts": check_count,
    "updates": check_count,
    "deletes": check_count,
    "snapshot_rows": check_count,
    "reader": check_text,
    "day": check_optional(check_count),
    "seconds": _seconds,
    "recovered": _flag,
    "last_arrival": check_optional(_instant),
    "snapshot_delta": _flag,
    "data_sha256": check_optional(check_sha256),
    "reader_state": check_optional(lambda value, file, name: _object(value, file, name)),
    "log_position": check_optional(_lsn),
    "cut": check_optional(check_text),
}


def required(body: dict[str, Any], name: str, file: str, where: str = "") -> object:
    """The value of field `name` of `body`; StateFileError naming it when it is absent."""
    if name not in body:
        raise StateFileError(file, f"field {where}{name}", MISSING, "is missing")
    return body[name]


def parse_json(raw: bytes, file: str) -> dict[str, Any]:
    """A state document's JSON object; StateFileError naming `file` when it is not one."""
    return _object(_json(raw, file), file, "the document")


def parse_record(raw: bytes, file: str) -> CaptureRecord:
    """A capture record stored alone (`pending.json`)."""
    return CaptureRecord.from_json(_json(raw, file), file)
