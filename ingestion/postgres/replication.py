"""Log mode's side of the database: the publication and the replication slot a lake follows a source through, and
the stream of pgoutput messages from that slot.

Names: one publication and one slot per lake and source, both `lago_<lake id's first 12 hex digits>_<source>`
(the lake id is `_ingestion/lake.json`'s), so two lakes following one database never take each other's changes.
Drop a slot a lake no longer follows with `python -m ingestion drop-slot --source <source>` (or, in SQL,
`select pg_drop_replication_slot('<name>')`): a slot nobody reads keeps the server's write-ahead log.

The stream runs over psycopg2's `LogicalReplicationConnection` (psycopg 3 has no replication API). A position is
confirmed to the slot with `confirm`, which the log capture calls only once what comes before it is in the lake.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
from psycopg import sql

from ingestion.catalog import Table
from ingestion.postgres.connection import APPLICATION_NAME, CONNECT_TIMEOUT_SECONDS, endpoint_of, redact
from ingestion.postgres.errors import PostgresAccessError, ReplicaIdentityError
from ingestion.postgres.pgoutput import format_lsn, parse_lsn
from ingestion.postgres.schema import relation_name, relation_of

log = logging.getLogger(__name__)

# the text forms the log capture parses: UTC times, ISO dates, floats that read back to the same double
_SESSION_OPTIONS = "-c timezone=UTC -c datestyle=ISO,YMD -c extra_float_digits=1"
# how long the stream waits for a message before it asks the server where it is
POLL_SECONDS = 0.2


def slot_name(lake_id: str, source: str) -> str:
    """The slot (and publication) of a lake's source: Postgres allows lower-case letters, digits and '_', 63 at most."""
    return f"lago_{lake_id[:12]}_{source.lower()}"[:63]


@dataclass(frozen=True)
class SlotInfo:
    name: str
    # the position the slot has been confirmed up to (None for a slot never read)
    confirmed: int | None
    # Postgres's wal_status: reserved, extended, unreserved, or lost (its WAL is gone: it can no longer be read)
    wal_status: str | None
    # bytes of write-ahead log between the slot's confirmed position and the server's current one
    lag_bytes: int | None
    active: bool

    @property
    def usable(self) -> bool:
        return self.wal_status != "lost" and self.confirmed is not None


_SLOT = """
select confirmed_flush_lsn::text, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
    active
from pg_replication_slots where slot_name = %s and database = current_database()
"""


def slot_info(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> SlotInfo | None:
    row = conn.execute(_SLOT, (name,)).fetchone()
    if row is None:
        return None
    confirmed, status, lag, active = row
    return SlotInfo(
        name,
        parse_lsn(confirmed) if confirmed else None,
        status,
        int(lag) if lag is not None else None,
        bool(active),
    )


def current_position(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """The end of the write-ahead log the server has written so far: every transaction committed before now ends
    at or before it, also one committed with `synchronous_commit = off` whose WAL is not flushed yet (the
    walsender sends it once the WAL writer has flushed it, within a fraction of a second)."""
    row = conn.execute("select pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


# a walsender whose client just closed its connection takes a moment to release the slot
RELEASE_SECONDS = 10.0


def drop_slot(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> bool:
    """Drop the slot when it exists, once no walsender holds it any more; whether it did."""
    deadline = time.monotonic() + RELEASE_SECONDS
    while time.monotonic() < deadline:
        held = conn.execute("select active from pg_replication_slots where slot_name = %s", (name,)).fetchone()
        if held is None or not held[0]:
            break
        time.sleep(0.1)
    row = conn.execute(
        "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = %s", (name,)
    ).fetchone()
    return row is not None


def published_tables(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> set[tuple[str, str]] | None:
    """The (schema, table) pairs the publication publishes; None when there is no such publication."""
    if conn.execute("select 1 from pg_publication where pubname = %s", (name,)).fetchone() is None:
        return None
    rows = conn.execute("select schemaname, tablename from pg_publication_tables where pubname = %s", (name,))
    return {(str(s), str(t)) for s, t in rows.fetchall()}


def ensure_publication(conn: psycopg.Connection[tuple[Any, ...]], name: str, tables: list[Table]) -> bool:
    """Make the publication publish exactly `tables`; whether it had to be created or changed."""
    wanted = {relation_of(t) for t in tables}
    found = published_tables(conn, name)
    if found == wanted:
        return False
    listed = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(s), sql.Identifier(t)) for s, t in sorted(wanted)
    )
    verb = "alter publication {} set table {}" if found is not None else "create publication {} for table {}"
    conn.execute(sql.SQL(verb).format(sql.Identifier(name), listed))
    return True


_IDENTITY = """
select c.relreplident::text,
    coalesce((select array_agg(a.attname::text order by a.attnum) from pg_index as i
              join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
              where i.indrelid = c.oid and (case c.relreplident when 'i' then i.indisreplident
                                                                 else i.indisprimary end)), '{}')
from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p')
"""


def check_replica_identity(conn: psycopg.Connection[tuple[Any, ...]], table: Table) -> None:
    """A table log mode can follow: its deletes and updates carry the declared key. Without a primary key (or a
    replica identity index or FULL), Postgres would not even let the table's updates run once it is published."""
    schema, name = relation_of(table)
    row = conn.execute(_IDENTITY, (schema, name)).fetchone()
    if row is None:
        return  # a missing table is named by the column check, with the database's name
    identity, columns = str(row[0]), [str(c) for c in row[1]]
    if identity == "f":
        return
    declared = {k.lower() for k in table.primary_key}
    if identity == "n" or not columns:
        raise ReplicaIdentityError(table.qualified_name, relation_name(table), None)
    if {c.lower() for c in columns} != declared:
        raise ReplicaIdentityError(table.qualified_name, relation_name(table), tuple(columns))


class ReplicationStream:
    """One replication connection to the source: creates the slot, then streams its changes."""

    def __init__(self, dsn: str, slot: str, publication: str) -> None:
        self.dsn, self.slot, self.publication = dsn, slot, publication
        self.endpoint = endpoint_of(dsn)
        try:
            self.conn = psycopg2.connect(
                dsn,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                application_name=APPLICATION_NAME,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=_SESSION_OPTIONS,
            )
        except psycopg2.Error as exc:
            raise self.error("cannot open a replication connection", exc) from None
        self.cursor: Any = self.conn.cursor()
        self.started = False
        self._asked_at = 0.0

    def error(self, doing: str, exc: BaseException) -> PostgresAccessError:
        reason = " ".join(redact(str(exc), self.dsn).split())
        return PostgresAccessError(str(self.endpoint), f"{doing}: {reason}")

    def create_slot(self) -> tuple[int, str]:
        """Create the slot; its consistent position and the name of the snapshot it exports, which another
        connection reads the tables in (`SET TRANSACTION SNAPSHOT`) until this connection does anything else."""
        command = f"CREATE_REPLICATION_SLOT \"{self.slot}\" LOGICAL pgoutput (SNAPSHOT 'export')"
        try:
            self.cursor.execute(command)
            row = self.cursor.fetchone()
        except psycopg2.Error as exc:
            raise self.error(f"creating replication slot {self.slot} failed", exc) from None
        log.info("replication slot %s created at %s", self.slot, row[1])
        return parse_lsn(str(row[1])), str(row[2])

    def start(self) -> None:
        """Stream from the slot's confirmed position (changes the lake already holds are skipped by the caller)."""
        try:
            self.cursor.start_replication(
                slot_name=self.slot,
                decode=False,
                options={"proto_version": "1", "publication_names": self.publication},
            )
        except psycopg2.Error as exc:
            raise self.error(f"reading replication slot {self.slot} failed", exc) from None
        self.started = True

    def messages(self) -> Iterator[tuple[bytes, int] | int | None]:
        """Each message's payload with its position; when none is waiting, the position the server has sent
        everything up to (from a keepalive it was asked for), or None when no answer came within POLL_SECONDS."""
        cursor = self.cursor
        while True:
            try:
                message = cursor.read_message()
            except psycopg2.Error as exc:
                raise self.error(f"reading replication slot {self.slot} failed", exc) from None
            if message is not None:
                yield bytes(message.payload), int(message.data_start)
                continue
            if self._asked_at and _seconds(cursor.io_timestamp) >= self._asked_at:
                # the last message read was the keepalive asked for: its position follows every change sent
                self._asked_at = 0.0
                yield int(cursor.wal_end)
                continue
            if not self._asked_at:
                self._asked_at = time.time()
                try:
                    cursor.send_feedback(reply=True)
                except psycopg2.Error as exc:
                    raise self.error(f"reading replication slot {self.slot} failed", exc) from None
            select.select([cursor], [], [], POLL_SECONDS)
            yield None

    def confirm(self, lsn: int) -> None:
        """Tell the slot everything up to `lsn` is durable: the server may recycle the WAL before it."""
        try:
            self.cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, apply_lsn=lsn, force=True)
        except psycopg2.Error as exc:
            raise self.error(f"confirming position {format_lsn(lsn)} to slot {self.slot} failed", exc) from None
        log.debug("slot %s confirmed up to %s", self.slot, format_lsn(lsn))

    def close(self) -> None:
        self.conn.close()


def _seconds(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


# `status` warns when a slot holds more write-ahead log than this (env-free: `status --lag-warning` sets it)
DEFAULT_LAG_WARNING_BYTES = 1 << 30


def lake_slot(dsn: str, lake_id: str, source: str) -> SlotInfo | None:
    """The slot a lake follows `source` through, as the server sees it now; None when there is none."""
    from ingestion.postgres.connection import connect

    with connect(dsn, autocommit=True) as conn:
        try:
            return slot_info(conn, slot_name(lake_id, source))
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), dsn).split())
            raise PostgresAccessError(
                str(endpoint_of(dsn)), f"reading the replication slots failed: {reason}"
            ) from None


def drop_lake_slot(dsn: str, lake_id: str, source: str) -> tuple[str, bool]:
    """Drop the slot and the publication a lake follows `source` through; the name, and whether a slot was there.
    The lake keeps its state: its next log capture takes a new slot and diffs the tables against the lake."""
    from ingestion.postgres.connection import connect

    name = slot_name(lake_id, source)
    with connect(dsn, autocommit=True) as conn:
        try:
            dropped = drop_slot(conn, name)
            conn.execute(sql.SQL("drop publication if exists {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), dsn).split())
            raise PostgresAccessError(str(endpoint_of(dsn)), f"dropping slot {name} failed: {reason}") from None
    return name, dropped
