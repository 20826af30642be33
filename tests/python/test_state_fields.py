"""The ingestion state's documents are read in one place (`state.py`) and every field is checked there: a record
written by ingestion reads back equal, and each field given a value of the wrong kind is refused naming it."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields

import pytest

from ingestion.errors import MISSING as MISSING_VALUE
from ingestion.errors import StateFileError
from ingestion.state import _RECORD_FIELDS, CaptureRecord, TableState, parse_record

FILE = "lake/_ingestion/loyalty/clientes/state.json"


def record(**changes: object) -> CaptureRecord:
    values: dict[str, object] = {
        "capture_id": "20260101_120000_000001",
        "kind": "cdc",
        "data_key": "raw/loyalty/cdc/clientes/clientes_20260101_120000_000001.parquet",
        "snapshot_key": "_ingestion/loyalty/clientes/snapshots/20260101_120000_000001.parquet",
        "first_sequence": 11,
        "last_sequence": 15,
        "inserts": 2,
        "updates": 2,
        "deletes": 1,
        "snapshot_rows": 11,
        "reader": "csv",
        "day": 3,
        "seconds": 0.5,
        "recovered": False,
        "last_arrival": "2026-01-01T12:00:00+00:00",
        "snapshot_delta": True,
        "data_sha256": "ab" * 32,
        "reader_state": {"kind": "cursor", "mark": "2026-01-01 00:00:00+00"},
        "log_position": "16/B374D848",
        "cut": "postgres:7715524220382220774/16384/729:731:730",
    }
    values.update(changes)
    return CaptureRecord(**values)  # type: ignore[arg-type]


def test_every_record_field_is_checked() -> None:
    assert set(_RECORD_FIELDS) == {f.name for f in fields(CaptureRecord)}


def test_a_state_written_by_ingestion_reads_back_equal() -> None:
    state = TableState(15, "_ingestion/loyalty/clientes/snapshots/a.parquet", [record()], ["x.parquet"])
    assert TableState.from_json(state.to_json(), FILE) == state
    assert parse_record(json.dumps(asdict(record(data_sha256=None))).encode(), FILE) == record(data_sha256=None)


# a wrong value for every field of a record
WRONG: dict[str, object] = {
    "capture_id": "2026-01-01 12:00",
    "kind": "merge",
    "data_key": 7,
    "snapshot_key": None,
    "first_sequence": 1.5,
    "last_sequence": "15",
    "inserts": -1,
    "updates": None,
    "deletes": False,
    "snapshot_rows": [],
    "reader": "",
    "day": "3",
    "seconds": "fast",
    "recovered": "no",
    "last_arrival": "2026-01-01T12:00:00",
    "snapshot_delta": 1,
    "data_sha256": "not-a-digest",
    "reader_state": ["not", "an", "object"],
    "log_position": "not-an-lsn",
    "cut": 729,
}


def test_every_field_has_a_wrong_value_tried() -> None:
    assert set(WRONG) == set(_RECORD_FIELDS)


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_value_is_refused_naming_file_field_and_value(name: str) -> None:
    body = json.loads(TableState(15, None, [record()]).to_json())
    body["captures"][0][name] = WRONG[name]
    with pytest.raises(StateFileError) as refused:
        TableState.from_json(json.dumps(body).encode(), FILE)
    error = refused.value
    assert (error.file, error.field, error.value) == (FILE, f"field captures[0].{name}", WRONG[name])
    assert error.exit_code == 4 and FILE in str(error) and name in str(error)


@pytest.mark.parametrize("name", [f.name for f in fields(CaptureRecord) if f.default is MISSING])
def test_a_missing_required_field_is_named(name: str) -> None:
    body = asdict(record())
    body.pop(name)
    with pytest.raises(StateFileError) as refused:
        parse_record(json.dumps(body).encode(), FILE)
    error = refused.value
    assert (error.file, error.field, error.value, error.problem) == (FILE, f"field {name}", MISSING_VALUE, "is missing")


def test_a_record_of_an_older_version_reads_without_its_optional_fields() -> None:
    # a lake written before a field existed (a file source's records never carry a cut, say) reads as it was
    body = asdict(record())
    for name in ("cut", "log_position", "reader_state", "data_sha256"):
        body.pop(name)
    read = parse_record(json.dumps(body).encode(), FILE)
    assert (read.cut, read.log_position, read.reader_state, read.data_sha256) == (None, None, None, None)
    assert read == record(cut=None, log_position=None, reader_state=None, data_sha256=None)


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[1]", b'{"last_sequence": 1}'])
def test_a_document_that_is_not_a_state_is_refused(raw: bytes) -> None:
    with pytest.raises(StateFileError) as refused:
        TableState.from_json(raw, FILE)
    assert refused.value.file == FILE
