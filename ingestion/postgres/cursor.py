"""Cursor mode's window: from which cursor value a capture must read so that no committed row is missed.

A cursor capture reads the rows whose cursor column is at or after the table's mark (and the rows whose cursor is
NULL), in the run's one snapshot, and applies them to the lake's stored state by key (`ingestion/window.py`). The
danger is a late commit: a transaction that took its cursor value before a capture and commits after it carries a
value below anything that capture saw. A mark taken as "the highest value read" would skip it for ever.

The mark therefore moves by the database's clock, never by the values alone. Before the run's snapshot, the reader
notes for each cursor table a *candidate*: the column's highest value, and the database's clock just after that
value was read (`at`). Then it notes the *horizon*: the start of the oldest transaction open in the database
(`pg_stat_activity.xact_start`), or the moment it looked when none is. A candidate whose `at` is at or before the
horizon (less `meta.cursor_lag`) becomes the next capture's mark. Why that is safe, for a cursor value the writer
takes inside its transaction from a source that never goes back (the database's clock, `now()` or
`clock_timestamp()`, in a default or a trigger; or a sequence):

- a row the next capture does not read has a value below the mark, so its value was taken before the candidate's
  highest value was, which was committed before `at`: its transaction started before `at`, so before the horizon;
- every transaction open at this run's snapshot started at or after the horizon (it was open when the horizon was
  read, or began later), so that row's transaction had ended before this run's snapshot: this run read it, or an
  earlier run did, and the lake holds it.

A transaction that stays open holds the mark where it was (the window grows, every row in it is read again and
publishes nothing unless it changed); the mark moves on once it ends. `meta.cursor_lag` covers an application that
takes the value from its own clock: the time its clock may run ahead of the database's, plus the time between
taking the value and starting the transaction. When the horizon cannot be read (another role's sessions are hidden
without `pg_read_all_stats`, or a prepared transaction, whose start is unknown, is pending) the mark stays where
it was: still safe, since a mark that was safe once stays safe.

What the window cannot see, documented in the README: a row whose cursor value is set back below the mark (it is
read again by the next snapshot-mode capture; `verify` names it meanwhile). Rows whose cursor is NULL are read by
every capture. Deletes are found by a key scan every `meta.cursor_key_scan` captures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ingestion.catalog import Table
from ingestion.errors import LakeStateError
from ingestion.postgres.schema import DatabaseColumn, relation_of

log = logging.getLogger(__name__)

# candidates kept while a long transaction holds the mark back; the oldest are dropped first (always safe: a mark
# only comes out lower)
MAX_CANDIDATES = 64
_KIND = "cursor"


@dataclass(frozen=True)
class Candidate:
    """The cursor's highest value in a snapshot, and the database's clock after that snapshot was taken."""

    at: datetime
    value: str  # as Postgres prints it (in UTC), cast back to the column's type when it is used


@dataclass(frozen=True)
class CursorState:
    """A cursor table's window, kept in the table's capture state (`CaptureRecord.reader_state`)."""

    column: str
    # the value the next capture reads from (None: read the whole table)
    mark: str | None
    # values not yet safe to read from, oldest first
    candidates: tuple[Candidate, ...] = ()
    # cursor captures since the last one that read every key
    since_key_scan: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "column": self.column,
            "mark": self.mark,
            "candidates": [{"at": c.at.isoformat(), "value": c.value} for c in self.candidates],
            "since_key_scan": self.since_key_scan,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], table: Table) -> CursorState | None:
        """The state kept by the last cursor capture; None when it was kept for another column (the declaration
        changed: the next capture reads the whole table)."""
        if raw.get("kind") != _KIND or raw.get("column") != table.cursor_column:
            return None
        try:
            mark = raw["mark"]
            candidates = tuple(
                Candidate(datetime.fromisoformat(str(c["at"])), str(c["value"])) for c in raw["candidates"]
            )
            since = raw["since_key_scan"]
            if (mark is not None and not isinstance(mark, str)) or not isinstance(since, int) or since < 0:
                raise ValueError(f"mark {mark!r}, since_key_scan {since!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise LakeStateError(
                table.qualified_name,
                f"its cursor state in the capture log is not what a cursor capture writes ({exc})",
                "capture the table once with --mode snapshot, which reads it whole and starts a new window",
            ) from None
        return cls(str(raw["column"]), mark, candidates, since)

    def advance(self, candidate: Candidate | None, horizon: datetime | None, lag: float, scanned: bool) -> CursorState:
        """The state after a capture that noted `candidate` and `horizon` (None: unknown), read every key or not."""
        candidates = [*self.candidates, *([candidate] if candidate is not None else [])]
        mark = self.mark
        if horizon is not None:
            usable = [c for c in candidates if c.at <= horizon - timedelta(seconds=lag)]
            if usable:
                mark = usable[-1].value
                candidates = [c for c in candidates if c not in usable]
        return CursorState(
            self.column,
            mark,
            tuple(candidates[-MAX_CANDIDATES:]),
            0 if scanned else self.since_key_scan + 1,
        )


def highest(conn: psycopg.Connection[tuple[object, ...]], table: Table, column: DatabaseColumn) -> Candidate | None:
    """The cursor's highest value now (in a snapshot of its own, before the run's), and the clock after it was
    read; None for a table with no cursor value."""
    schema, name = relation_of(table)
    row = conn.execute(
        sql.SQL("select max({})::text, clock_timestamp() from {}.{}").format(
            sql.Identifier(column.name), sql.Identifier(schema), sql.Identifier(name)
        )
    ).fetchone()
    if row is None or row[0] is None:
        return None
    at = row[1]
    assert isinstance(at, datetime)
    return Candidate(at, str(row[0]))


_HORIZON = """
select least(statement_timestamp(), min(a.xact_start)),
    count(*) filter (where a.query = '<insufficient privilege>'),
    (select count(*) from pg_prepared_xacts where database = current_database()),
    (array_agg(a.pid order by a.xact_start) filter (where a.xact_start is not null))[1],
    (array_agg(a.application_name order by a.xact_start) filter (where a.xact_start is not null))[1]
from pg_stat_activity as a
where a.datid = (select oid from pg_database where datname = current_database()) and a.pid <> pg_backend_pid()
"""


def horizon(conn: psycopg.Connection[tuple[object, ...]], database: str) -> datetime | None:
    """The start of the oldest transaction open in the database (or now, when none is), read before the run's
    snapshot; None when it cannot be known."""
    row = conn.execute(_HORIZON).fetchone()
    assert row is not None
    moment, hidden, prepared, pid, application = row
    if int(str(hidden)):
        log.warning(
            "Postgres database %s: %s session(s) of other roles are hidden from this role, so cursor windows do not "
            "move on this run (the capture stays exact); grant it pg_read_all_stats to let them move",
            database,
            hidden,
        )
        return None
    if int(str(prepared)):
        log.warning(
            "Postgres database %s: %s prepared transaction(s) pending, whose start is unknown: cursor windows do not "
            "move on this run",
            database,
            prepared,
        )
        return None
    assert isinstance(moment, datetime)
    if pid is not None:
        log.info(
            "Postgres database %s: oldest open transaction since %s (pid %s, %s): cursor windows move up to there",
            database,
            moment.isoformat(),
            pid,
            application or "no application name",
        )
    return moment
