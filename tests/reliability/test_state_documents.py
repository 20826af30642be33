"""A table's ingestion state that is not what ingestion writes (a hand edit, a bad restore, another tool): every
command that reads it stops with exit 4 naming the file and the field or value, before it writes anything.

Each document is checked once, where it is loaded (`state.py`): every field's presence, type and range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import History, LocalView, Recorder, csv_args, fingerprint, ingest
from support.cli import run_cli

STATE = "_ingestion/loyalty/clientes/state.json"
PENDING = "_ingestion/loyalty/clientes/pending.json"

Edit = Callable[[dict[str, Any]], object]


def _set(path: str, value: object) -> Edit:
    """An edit of one field: `path` is dotted, a number indexes a list."""

    def edit(body: dict[str, Any]) -> object:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
        return body

    return edit


def _drop(name: str) -> Edit:
    def edit(body: dict[str, Any]) -> object:
        body.pop(name)
        return body

    return edit


# case: (edit of state.json, the field the error names, a value it shows)
CASES: dict[str, tuple[Edit, str, str]] = {
    "capture_id not a time": (
        _set("captures.0.capture_id", "20261304_999999_000000"),
        "captures[0].capture_id",
        "20261304",
    ),
    "capture_id a word": (_set("captures.0.capture_id", "yesterday"), "captures[0].capture_id", "yesterday"),
    "unknown kind": (_set("captures.0.kind", "snapshot"), "captures[0].kind", "snapshot"),
    "last_sequence as text": (_set("last_sequence", "12"), "last_sequence", "'12'"),
    "negative count": (_set("captures.0.inserts", -3), "captures[0].inserts", "-3"),
    "count as true": (_set("captures.0.deletes", True), "captures[0].deletes", "True"),
    "missing snapshot_key": (_drop("snapshot_key"), "snapshot_key", "is missing"),
    "missing a record field": (
        lambda b: _set("captures.0", {"capture_id": b["captures"][0]["capture_id"]})(b),
        "captures[0].kind",
        "is missing",
    ),
    "captures not a list": (_set("captures", {"0": 1}), "captures", "is not a list"),
    "a list, not an object": (lambda b: [b], "the document", "is not a JSON object"),
    "data file of another table": (
        lambda b: _set("captures.0.data_key", b["captures"][0]["data_key"].replace("clientes", "produtos"))(b),
        "captures[0].data_key",
        "produtos",
    ),
    "snapshot out of the lake": (_set("snapshot_key", "../../../etc/passwd"), "snapshot_key", "etc/passwd"),
    "sequence past the table's": (_set("captures.0.last_sequence", 10**9), "captures[0].last_sequence", "1000000000"),
}


@pytest.fixture
def lake(tmp_path: Path, history: History) -> Path:
    lake = tmp_path / "lake"
    ingest(lake, *csv_args(history.folders[0], tables="clientes"), check=True)
    return lake


def _expect_refused(lake: Path, history: History, file: str, field: str, shown: str) -> list[int]:
    """`run` and `status` both exit 4 naming the file and the field, and leave the lake as it was."""
    before = fingerprint(LocalView(lake))
    codes = []
    for result in (
        ingest(lake, *csv_args(history.folders[1], tables="clientes"), timeout=120),
        run_cli("status", "--lake", str(lake), "--source", "loyalty", timeout=60),
    ):
        codes.append(result.returncode)
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert file in result.stderr and field in result.stderr and shown in result.stderr, result.stderr
    assert fingerprint(LocalView(lake)) == before, "a refused run changed the lake"
    return codes


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_state_document_is_exit_4_naming_file_and_field(
    case: str, lake: Path, history: History, report: Recorder
) -> None:
    edit, field, shown = CASES[case]
    state = lake / STATE
    state.write_text(json.dumps(edit(json.loads(state.read_text()))), encoding="utf-8")
    codes = _expect_refused(lake, history, STATE, field, shown)
    report.record(f"state.json with {case}", runs=2, note=f"run and status: exit {codes}, field {field} named")


def test_a_malformed_pending_record_is_exit_4_naming_file_and_field(
    lake: Path, history: History, report: Recorder
) -> None:
    record = json.loads((lake / STATE).read_text())["captures"][0]
    record["capture_id"] = "not-a-time"
    (lake / PENDING).write_text(json.dumps(record), encoding="utf-8")
    before = fingerprint(LocalView(lake))
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"), timeout=120)
    report.record("pending.json with a capture_id that is not a time", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert PENDING in result.stderr and "capture_id" in result.stderr and "not-a-time" in result.stderr
    assert fingerprint(LocalView(lake)) == before


def test_a_malformed_held_record_is_exit_4_for_approve_and_status(lake: Path, report: Recorder) -> None:
    record = json.loads((lake / STATE).read_text())["captures"][0]
    record["kind"] = "purge"
    held = lake / "_ingestion/loyalty/clientes/held/20990101_000000_000000.json"
    held.parent.mkdir(parents=True)
    held.write_text(json.dumps({"record": record, "base_snapshot": None, "base_sequence": 0, "verdict": "?"}))
    before = fingerprint(LocalView(lake))
    codes = []
    for args in (["approve", "loyalty.clientes"], ["status", "--source", "loyalty"]):
        result = run_cli(*args, "--lake", str(lake), timeout=60)
        codes.append(result.returncode)
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr
        assert held.name in result.stderr and "record.kind" in result.stderr and "purge" in result.stderr
    report.record("held capture record with an unknown kind", runs=2, note=f"approve and status: exit {codes}")
    assert fingerprint(LocalView(lake)) == before
