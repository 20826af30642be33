"""Replays and disorder on the dbt side: whatever order, repetition or duplication the change files arrive in,
Bronze ends equal to the truth (the final source state), and the snapshot's versions are the truth's versions. A
replayed file, under a later or an earlier name, changes no row of Bronze, history, Silver or their feeds.

The fixed scenarios deliver the files of the suite's history (three captures of clientes and produtos, written by
ingestion) into a lake otherwise than ingestion published them, with a `dbt build` of Bronze after each delivery.
The property test writes random histories of clientes by hand, with the lake's exact schema, and builds Bronze and
its snapshot after each capture.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from reliability_support import (
    ChangeRow,
    Comparison,
    History,
    Recorder,
    capture_files,
    compare,
    compare_bronze,
    relation_rows,
    snapshot_truth,
    warehouse_state,
    write_change_file,
)
from support.dbt import Dbt

from ingestion.catalog import CDC_OPERATION, CDC_SEQUENCE, CDC_TIMESTAMP, load_catalog

pytestmark = pytest.mark.dbt

LOYALTY = load_catalog().source("loyalty")
CLIENTES = LOYALTY.tables["clientes"]
TABLES = (CLIENTES, LOYALTY.tables["produtos"])
# Bronze, and what reads it (history, Silver, their feeds): a replay must change none of them. Only the tests whose
# parents are all selected.
BRONZE = (
    "--select",
    "bronze_loyalty__clientes",
    "bronze_loyalty__produtos",
    "history_loyalty__clientes",
    "silver_loyalty__customers",
    "silver_loyalty__products",
    "--indirect-selection",
    "cautious",
)
# a replay gets a new, later name, as a capture published again would
REPLAY_NAME = "{table}_29991231_235959_999999.parquet"
# or an earlier one, as a file restored from a backup under an old name
EARLIER_REPLAY_NAME = "{table}_20000101_000000_000000.parquet"


# -- fixed scenarios: the history's files, delivered otherwise -----------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One capture's file of every table: 0 the full load, 1 and 2 the change files."""

    capture: int
    name: str | None = None  # another name (a template with {table}); None: its own
    rows_twice: bool = False  # every change row written twice in the file


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[tuple[Delivery, ...], ...]  # one `dbt build` after each step
    last_step_changes_nothing: bool = False


SCENARIOS = [
    Scenario(
        "a change file delivered twice (a copy under a later name)",
        ((Delivery(0), Delivery(1), Delivery(2)), (Delivery(1, name=REPLAY_NAME),)),
        last_step_changes_nothing=True,
    ),
    Scenario(
        "a change file delivered twice (a copy under an earlier name)",
        ((Delivery(0), Delivery(1), Delivery(2)), (Delivery(1, name=EARLIER_REPLAY_NAME),)),
        last_step_changes_nothing=True,
    ),
    Scenario(
        "files delivered in shuffled order (change 2, full load, change 1)",
        ((Delivery(2),), (Delivery(0),), (Delivery(1),)),
    ),
    Scenario(
        "duplicate rows in files (every row twice; a first build, then an incremental one)",
        ((Delivery(0, rows_twice=True), Delivery(1, rows_twice=True)), (Delivery(2, rows_twice=True),)),
    ),
    Scenario(
        "a late file, older than the data already merged",
        ((Delivery(0), Delivery(2)), (Delivery(1),)),
    ),
]


@pytest.fixture(scope="module")
def files(history: History) -> dict[str, list[Path]]:
    """Per table, the history's files in capture order: the full load, then the change files."""
    found = {table.name: capture_files(history.lake, table) for table in TABLES}
    assert all(len(paths) == len(history.folders) for paths in found.values()), found
    return found


def deliver(source_lake: Path, lake: Path, file: Path, table: str, delivery: Delivery) -> None:
    target = lake / file.relative_to(source_lake)
    if delivery.name:
        target = target.with_name(delivery.name.format(table=table))
    target.parent.mkdir(parents=True, exist_ok=True)
    if delivery.rows_twice:
        rows = pq.read_table(file).to_pylist()
        write_change_file(target, LOYALTY.tables[table], rows + rows)
    else:
        shutil.copy(file, target)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.split(" (")[0].replace(" ", "-"))
def test_replayed_shuffled_duplicated_and_late_files_leave_bronze_equal_to_the_truth(
    scenario: Scenario,
    dbt_site: Dbt,
    history: History,
    files: dict[str, list[Path]],
    tmp_path: Path,
    report: Recorder,
) -> None:
    lake = tmp_path / "lake"
    dbt_site.point_at(lake)
    before_last: dict[str, list[ChangeRow]] = {}
    for number, step in enumerate(scenario.steps, start=1):
        if number == len(scenario.steps) and scenario.last_step_changes_nothing:
            before_last = tables_but_the_checkpoint(dbt_site)
        for delivery in step:
            for table in TABLES:
                deliver(history.lake, lake, files[table.name][delivery.capture], table.name, delivery)
        build = dbt_site.build(*BRONZE)
        assert build.returncode == 0, build.stdout[-3000:]
    with dbt_site.connect() as con:
        result = compare_bronze(con, [(table, snapshot_truth(history.lake, table)) for table in TABLES])
    # the replay, under its new name, is read and decided on its keys' history: no row changes in Bronze, history,
    # Silver or their change feeds
    unchanged = scenario.last_step_changes_nothing and tables_but_the_checkpoint(dbt_site) == before_last
    report.record(
        f"dbt: {scenario.name}",
        runs=len(scenario.steps),
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note="clientes and produtos" + ("; the last build changed no row" if unchanged else ""),
    )
    assert result.exact, result
    assert unchanged == scenario.last_step_changes_nothing, "replaying a file changed Bronze, history or Silver"


def tables_but_the_checkpoint(site: Dbt) -> dict[str, list[ChangeRow]]:
    """Every table's rows but the checkpoint's, which records a replayed file under its new name, and the feed's
    commit log, which counts every build (a build that changes nothing still commits an empty version)."""
    state = warehouse_state(site.database)
    for bookkeeping in ("bronze_processed_files", "change_feed_commits", "change_feed_positions", "lake_identity"):
        state.pop(f"bronze.{bookkeeping}", None)
    return state


# -- property: random histories of clientes written by hand ----------------------------------------------------------

KEYS = ("c0", "c1", "c2", "c3")
SNAPSHOT_BUILD = ("--select", "bronze_loyalty__clientes", "history_loyalty__clientes+")


@dataclass(frozen=True)
class Change:
    """A change of one key: a delete when the key exists at that point; else an insert or an update."""

    key: str
    delete: bool
    points: int
    bluesky: int | None


@dataclass(frozen=True)
class RandomHistory:
    full_load: tuple[str, ...]  # the keys of the first capture
    captures: tuple[tuple[Change, ...], ...]  # each later capture's changes, in order (none: no file)
    replays: tuple[int | None, ...]  # per later capture, an earlier file delivered again with it


changes = st.builds(
    Change,
    key=st.sampled_from(KEYS),
    delete=st.booleans(),
    points=st.integers(-50, 5000),
    bluesky=st.none() | st.integers(0, 1),
)


@st.composite
def random_histories(draw: st.DrawFn) -> RandomHistory:
    later = draw(st.integers(1, 3))
    return RandomHistory(
        full_load=tuple(draw(st.lists(st.sampled_from(KEYS), min_size=1, unique=True))),
        captures=tuple(tuple(draw(st.lists(changes, max_size=6))) for _ in range(later)),
        replays=tuple(draw(st.none() | st.integers(0, 9)) for _ in range(later)),
    )


# Always tried: c0 is deleted, then re-inserted and changed again in one capture, with c1 deleted and the file that
# deleted c0 delivered again; then, in a capture without changes, the full load (inserting both) arrives again.
# A late delete must not remove c0, nor a late insert resurrect c1.
RESURRECTION = RandomHistory(
    full_load=("c0", "c1"),
    captures=(
        (Change("c0", True, 1, None),),
        (Change("c0", False, 2, 1), Change("c0", False, 3, None), Change("c1", True, 4, 0)),
        (),
    ),
    replays=(None, 1, 0),
)

Row = tuple[object, ...]


@dataclass
class Writer:
    """Applies a random history to the truth and writes each capture's change file as ingestion would."""

    lake: Path
    state: dict[str, Row] = field(default_factory=dict)
    sequence: int = 0
    captured_at: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    files: list[Path] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    # per key, the history the change log implies: a version per insert or update, a deletion record per delete
    events: dict[str, list[tuple[str, tuple[object, ...]]]] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)  # deletes, re-inserts, keys changed twice in a capture

    def row(self, key: str, points: int, bluesky: int | None) -> Row:
        # DtAtualizacao changes with every change, as in the source: a change is never a no-op
        updated = datetime(2025, 1, 1) + timedelta(seconds=self.sequence)
        values = {
            "idCliente": key,
            "flEmail": 1,
            "flTwitch": 0,
            "flYouTube": self.sequence % 2,
            "flBlueSky": bluesky,
            "flInstagram": 0,
            "qtdePontos": points,
            "DtCriacao": "2024-01-01 10:00:00.000",
            "DtAtualizacao": updated.strftime("%Y-%m-%d %H:%M:%S.000"),
        }
        return tuple(values[name] for name in CLIENTES.column_names)

    def capture(self, changes: list[Change], replay: int | None) -> None:
        # the capture's time is the time it is written, after the previous build, as for a real capture
        self.captured_at = max(datetime.now(UTC), self.captured_at + timedelta(milliseconds=1))
        lines = []
        for change in changes:
            self.sequence += 1
            if change.key in self.state and change.delete:
                operation, values = "D", self.state.pop(change.key)
                self.deleted.add(change.key)
            else:
                operation = "U" if change.key in self.state else "I"
                values = self.state[change.key] = self.row(change.key, change.points, change.bluesky)
            self.events.setdefault(change.key, []).append(("deleted" if operation == "D" else "version", values))
            self.seen["deletes"] += operation == "D"
            self.seen["re-inserts"] += operation == "I" and change.key in self.deleted
            lines.append(
                {
                    CDC_OPERATION: operation,
                    CDC_TIMESTAMP: self.captured_at,
                    CDC_SEQUENCE: self.sequence,
                    **dict(zip(CLIENTES.column_names, values, strict=True)),
                }
            )
        keys = Counter(change.key for change in changes)
        self.seen["keys changed twice in a capture"] += sum(1 for count in keys.values() if count > 1)
        if lines:  # a capture without a change publishes no file
            self.files.append(write_change_file(self.path("cdc" if self.files else "full-load"), CLIENTES, lines))
        if replay is not None and self.files:
            replayed = self.files[replay % len(self.files)]
            shutil.copy(replayed, self.path("cdc", later=timedelta(microseconds=1)))
            self.seen["files replayed"] += 1

    def path(self, kind: str, later: timedelta = timedelta(0)) -> Path:
        stamp = (self.captured_at + later).strftime("%Y%m%d_%H%M%S_%f")
        folder = self.lake / "raw" / CLIENTES.source / kind / CLIENTES.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{CLIENTES.name}_{stamp}.parquet"


Event = tuple[str, Row]


def snapshot_events(site: Dbt) -> dict[str, list[Event]]:
    """Per key, the snapshot's rows in validity order; their validity intervals must chain without gap or overlap."""
    columns = ", ".join(f'"{name}"' for name in CLIENTES.column_names)
    with site.connect() as con:
        rows = con.execute(
            f"select {columns}, dbt_is_deleted, dbt_valid_from, dbt_valid_to "
            'from history.history_loyalty__clientes order by "idCliente", dbt_valid_from, _cdc_sequence'
        ).fetchall()
    events: dict[str, list[Event]] = {}
    ends: dict[str, list[tuple[object, object]]] = {}
    for *values, deleted, valid_from, valid_to in rows:
        key = str(values[0])
        events.setdefault(key, []).append(("deleted" if deleted == "True" else "version", tuple(values)))
        ends.setdefault(key, []).append((valid_from, valid_to))
    for key, intervals in ends.items():
        chain = [start for start, _ in intervals[1:]] + [None]
        assert [end for _, end in intervals] == chain, f"{key}: versions do not chain: {intervals}"
    return events


@dataclass
class Totals:
    examples: int = 0
    builds: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    versions: int = 0
    seen: Counter[str] = field(default_factory=Counter)

    def add(self, result: Comparison) -> None:
        self.expected += result.expected
        self.lost += result.lost
        self.duplicated += result.duplicated


def test_random_histories_bronze_and_snapshot_equal_the_truth(
    dbt_site: Dbt, tmp_path_factory: pytest.TempPathFactory, report: Recorder
) -> None:
    """Inserts, updates, deletes, re-inserts of deleted keys, several changes of one key in one capture, and earlier
    files delivered again: after each capture's build, Bronze equals the source; at the end the snapshot holds
    one version per change of a row (several in one capture included) and a deletion record per delete."""
    totals = Totals()

    # A failing example is printed as drawn; shrinking it would cost many dbt builds, so it is not shrunk.
    @settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(history=random_histories())
    @example(history=RESURRECTION)
    def check(history: RandomHistory) -> None:
        lake = tmp_path_factory.mktemp("random-history")
        dbt_site.point_at(lake)
        writer = Writer(lake)
        states = []
        first = [Change(key, False, 100, None) for key in history.full_load]
        for changes, replay in [(first, None), *zip(history.captures, history.replays, strict=True)]:
            writer.capture(list(changes), replay)
            states.append(dict(writer.state))
            build = dbt_site.build(*SNAPSHOT_BUILD)
            totals.builds += 1
            assert build.returncode == 0, build.stdout[-3000:]
            with dbt_site.connect() as con:
                found = relation_rows(con, "bronze.bronze_loyalty__clientes", CLIENTES.column_names)
            result = compare(Counter(writer.state.values()), found)
            assert result.exact, f"capture {len(states)}: Bronze differs from the truth: {result}"
        totals.add(result)
        expected = writer.events
        assert snapshot_events(dbt_site) == expected
        totals.examples += 1
        totals.seen.update(writer.seen)
        totals.versions += sum(len(events) for events in expected.values())

    check()
    report.record(
        f"dbt: random histories (hypothesis, {totals.examples} examples): Bronze and snapshot vs truth",
        runs=totals.builds,
        expected=totals.expected,
        lost=totals.lost,
        duplicated=totals.duplicated,
        note=f"{totals.versions} snapshot rows as expected; "
        + ", ".join(f"{count} {what}" for what, count in sorted(totals.seen.items())),
    )
