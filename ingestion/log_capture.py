"""Log mode: a database source's tables followed through its write-ahead log (Postgres logical replication,
`pgoutput`), every committed change a row of the lake's change files, exactly once.

A run, under the lake's lock:
1. settles what a crashed run left (`TableStore.settle_then_continue`) and checks each table: its declared columns
   are the database's, and its deletes carry the declared key (a primary key or replica identity);
2. when the source has no slot yet, the slot is gone or invalidated (`wal_status` lost), or a table has no lake
   state: creates the slot with an exported snapshot and reads every table in that snapshot with the snapshot
   reader's COPY path: a first full load, or for a table the lake already holds, a diff against the lake's state
   (`cdc.diff`), which publishes exactly what the lost slot would have;
3. streams the slot's changes up to the server's position at the start (`run`), or until stopped (`stream`):
   each committed transaction's changes, in commit order, become rows with the commit's time as `_cdc_timestamp`,
   one `_cdc_sequence` each and the commit's LSN as `_cdc_lsn`; every version of a key is kept. A transaction's
   changes are spilled, still as Postgres's text, to local Parquet parts as they are decoded
   (`ingestion.postgres.spool`), so memory does not grow with its size, and one still open when the run stops is
   dropped whole;
4. writes each table's change file with DuckDB from those parts (`_write_changes`: the text cast to the declared
   types as the snapshot reader casts COPY's, whole rows filled, within PUBLISH_MEMORY_LIMIT), publishes it through
   its `TableStore` (stage, publish, commit `state.json` with the log position the file holds everything up to) and
   only then confirms that position to the slot.

A crash anywhere is harmless: a position is confirmed only once its changes are committed in the lake, and a rerun,
which the slot serves from its last confirmed position, skips every transaction ending at or before a table's
committed position (`TableState.log_position`, the end of the last transaction a file holds). The change files
keep the lake's contract (`_cdc_operation`, `_cdc_timestamp`, `_cdc_sequence`, the declared columns) and add
`_cdc_lsn` last, which every reader of the lake (Bronze, history, verify, the stored state) leaves aside as it
does any undeclared column; loads and diffs from a snapshot have none.

Full rows without REPLICA IDENTITY FULL: an update that leaves a TOASTed value unchanged does not resend it, and a
delete under REPLICA IDENTITY DEFAULT carries only the key; both are filled from the key's last row, in this run's
earlier changes or else in the lake's stored state. A TRUNCATE deletes every row the lake holds for the table and
goes through the circuit breaker like a mass delete.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import psycopg
import pyarrow as pa

from ingestion import cdc
from ingestion.capture import COMPACT_FILES, COMPACT_SHARE, RunOptions
from ingestion.capture import _apply_breaker as apply_breaker
from ingestion.capture import _baseline as stored_baseline
from ingestion.catalog import CDC_OPERATION, CDC_SEQUENCE, CDC_TIMESTAMP, Source, Table
from ingestion.cdc import change_schema
from ingestion.duck import check_io, check_lake, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import SnapshotError, WorkspaceError
from ingestion.identity import ensure_identity
from ingestion.lake import Lake
from ingestion.postgres.connection import connect as connect_postgres
from ingestion.postgres.connection import endpoint_of, redact
from ingestion.postgres.errors import (
    DatabaseValueError,
    LogInterruptedError,
    PostgresAccessError,
    SchemaChangeError,
    SlotScopeError,
)
from ingestion.postgres.pgoutput import (
    Begin,
    Change,
    Commit,
    Relation,
    Truncate,
    Value,
    decode,
    format_lsn,
    parse_lsn,
)
from ingestion.postgres.replication import (
    ReplicationStream,
    check_replica_identity,
    current_position,
    drop_slot,
    ensure_publication,
    published_tables,
    slot_info,
    slot_name,
)
from ingestion.postgres.schema import database_columns, relation_name, relation_of, resolve_columns
from ingestion.postgres.spool import COMMITTED_AT, FILLED, LSN, OPERATION, POSITION, Operation, Spool
from ingestion.readers.base import CaptureContext
from ingestion.readers.postgres import PostgresReader
from ingestion.state import LOG_READER, CaptureKind, CaptureRecord, TableState, capture_id_of, moment_of
from ingestion.table_store import PreparedCapture, TableStore, failpoint
from ingestion.verdict import judge

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# a batch is published at the first transaction's end past this many changes: it bounds the local disk its spool
# takes and the changes a crash makes the next run read again (not memory: the spool is on disk)
BATCH_CHANGES = 1_000_000
# `stream` waits this long before each reconnection to a database it lost, then gives up (exit 3); the count
# starts again once it has streamed this many seconds
RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
RECONNECT_RESET_SECONDS = 60.0
# the commit's LSN, the last column of a change file from the log (not of a load or a diff from a snapshot)
CDC_LSN = "_cdc_lsn"


@dataclass(frozen=True)
class Follow:
    """`python -m ingestion stream`: follow the log until `stop` is set, publishing at most `latency` seconds after
    a change arrives."""

    latency: float
    stop: threading.Event


class LostToastError(SnapshotError):
    """An unchanged TOASTed value of a key the lake holds no row of: the log cannot say what it is."""

    def __init__(self, table: str, column: str, key: str) -> None:
        self.table, self.column, self.key = table, column, key
        super().__init__(
            f"table {table}: an update of key {key} left column {column} unchanged, but the lake holds no row of "
            "that key to take its value from; nothing was published. Capture the table again from scratch "
            "(drop its slot, see docs/operations.md)"
        )


# -- values: Postgres's text output as the declared types -----------------------------------------------------------


# pg_type's oid of `real`
FLOAT4_OID = 700


def _typed(table: Table, alias: str, single_precision: frozenset[str]) -> str:
    """Each declared column of a spool part (Postgres's text output) cast by DuckDB to its declared type, as the
    snapshot reader casts COPY's text. A timestamp goes through timestamptz: the text of a `timestamptz` carries
    its offset (+00, the session's zone), which a cast to a plain timestamp would drop rather than apply. A `real`
    goes through DuckDB's float (single precision): its shortest text, read as a double, would be another number
    than the one the database holds and COPY gives."""
    casts = []
    for column in table.columns:
        name = f"{alias}.{quote_identifier(column.name)}"
        if column.name in single_precision:
            casts.append(f"cast(cast({name} as float) as {column.data_type}) as {quote_identifier(column.name)}")
        elif column.data_type.strip().lower() == "timestamp":
            casts.append(f"cast(cast({name} as timestamptz) as timestamp) as {quote_identifier(column.name)}")
        else:
            casts.append(f"cast({name} as {column.data_type}) as {quote_identifier(column.name)}")
    return ", ".join(casts)


# -- one table's changes in a batch ---------------------------------------------------------------------------------


@dataclass
class _TableLog:
    table: Table
    store: TableStore
    state: TableState
    # the committed changes of the batch, and the open transaction's (moved to `changes` when it commits)
    changes: Spool
    pending: Spool
    # the relation's column of each declared key column, from its latest Relation message: an update whose old
    # row differs there changed the key
    key_positions: list[int] = field(default_factory=list)
    # refused whenever a change of the table is kept
    problem: SchemaChangeError | None = None
    # a declared column the relation lacks: a change from before it was added reads it as NULL (as a snapshot
    # taken then would); refused for a change committed after the run checked the database had it (dropped since)
    absent: SchemaChangeError | None = None

    # transactions ending at or before this position are in the lake already (set from the state: `settle`)
    floor: int = 0

    def settle(self) -> None:
        position = self.state.log_position
        self.floor = parse_lsn(position) if position is not None else 0
        self.changes.clear()
        self.pending.clear()

    def relation(self, message: Relation) -> None:
        """Map the declared columns onto the relation's; a column added or dropped is noted, and refused when a
        change of the table is kept (a change the lake already holds need not match today's declaration)."""
        names = [c.name for c in message.columns]
        self.problem, self.absent = None, None
        columns: list[int] = []
        declared = {c.name.lower() for c in self.table.columns}
        sources_file = f"models/bronze/{self.table.source}/_{self.table.source}__sources.yml"
        for name in names:
            if name.lower() not in declared:
                self.problem = SchemaChangeError(
                    self.table.qualified_name, relation_name(self.table), name, "added", sources_file
                )
        for column in self.table.columns:
            exact = [i for i, n in enumerate(names) if n == column.name]
            found = exact or [i for i, n in enumerate(names) if n.lower() == column.name.lower()]
            if len(found) != 1:
                error = SchemaChangeError(
                    self.table.qualified_name, relation_name(self.table), column.name, "dropped", sources_file
                )
                if found or column.name in self.table.primary_key:
                    self.problem = error
                    return
                self.absent = error
                columns.append(-1)
                continue
            columns.append(found[0])
        key_columns = {i for i, c in enumerate(message.columns) if c.is_key}
        self.key_positions = [columns[self.table.column_names.index(k)] for k in self.table.primary_key]
        single = frozenset(
            column.name
            for column, at in zip(self.table.columns, columns, strict=True)
            if at >= 0 and message.columns[at].type_oid == FLOAT4_OID
        )
        for spool in (self.changes, self.pending):
            spool.describe(columns, key_columns, single)


@dataclass
class _Batch:
    """The changes decoded since the last publish, by table; a transaction's are kept only once it commits."""

    by_relation: dict[tuple[str, str], _TableLog]
    by_oid: dict[int, _TableLog | None] = field(default_factory=dict)
    # the tables the open transaction changed (None: no transaction is open)
    open: dict[int, _TableLog] | None = None
    # the position the run checked each table's columns in the database at: a declared column a change lacks was
    # dropped when the change commits after it
    checked: int = 0
    # a change of a table whose columns no longer match the declaration: refused if its transaction is kept and
    # ends after the position given
    refused: list[tuple[_TableLog, SchemaChangeError, int]] = field(default_factory=list)
    commit_time: datetime | None = None
    commit_lsn: int = 0
    # the end of the last whole transaction decoded
    position: int = 0
    changes: int = 0
    first_at: float | None = None

    def feed(self, payload: bytes) -> None:
        message = decode(payload)
        # a change first: all but a few messages are one
        if isinstance(message, Change):
            table = self.by_oid.get(message.relation_oid)
            if table is not None and self.open is not None:
                if table.problem is not None:
                    self.refused.append((table, table.problem, 0))
                else:
                    if table.absent is not None:
                        self.refused.append((table, table.absent, self.checked))
                    self._change(table, message, len(payload))
        elif isinstance(message, Begin):
            self.open, self.commit_time, self.commit_lsn = {}, message.commit_time, message.final_lsn
        elif isinstance(message, Relation):
            table = self.by_relation.get((message.namespace, message.name))
            self.by_oid[message.oid] = table
            if table is not None:
                table.relation(message)
        elif isinstance(message, Truncate):
            for oid in message.relation_oids:
                table = self.by_oid.get(oid)
                if table is not None and self.open is not None:
                    self._add(table, "T", None, 0)
        elif isinstance(message, Commit):
            assert self.open is not None and self.commit_time is not None
            for table, problem, after in self.refused:
                if message.end_lsn > max(table.floor, after):
                    raise problem
            self.refused = []
            kept = 0
            for table in self.open.values():
                if message.end_lsn > table.floor:
                    kept += table.pending.count
                    table.changes.extend(table.pending)
                else:
                    table.pending.clear()
            self.open, self.position = None, message.end_lsn
            if kept and self.first_at is None:
                self.first_at = time.monotonic()
            self.changes += kept

    def _add(self, table: _TableLog, operation: Operation, values: tuple[Value, ...] | None, size: int) -> None:
        assert self.open is not None and self.commit_time is not None
        self.open[id(table)] = table
        table.pending.add(operation, self.commit_time, self.commit_lsn, values, size)

    def _change(self, table: _TableLog, message: Change, size: int) -> None:
        """The hot path of log mode: a change is kept as decoded, its values still text in the relation's order
        (the spool makes columns of them, the publish casts and fills them)."""
        operation: Operation = message.operation
        old, new = message.old_values, message.values
        if operation == "D":
            operation = "K" if message.key_only else "D"
        elif old is not None and any(old[i] != new[i] for i in table.key_positions):
            # the key itself changed: the old key's row is gone (filled from its last row), the new key's is new
            self._add(table, "K", old, size)
            operation = "I"
        assert self.open is not None and self.commit_time is not None
        self.open[id(table)] = table
        table.pending.add(operation, self.commit_time, self.commit_lsn, new, size)

    @property
    def in_transaction(self) -> bool:
        return self.open is not None

    def tables(self) -> Iterable[_TableLog]:
        return self.by_relation.values()

    def reset(self) -> None:
        """After a publish: each table's committed position is its new floor."""
        for table in self.tables():
            table.settle()
        self.changes, self.first_at = 0, None


# -- the run ---------------------------------------------------------------------------------------------------------


def run_log(
    lake: Lake,
    source: Source,
    tables: list[Table],
    dsn: str,
    options: RunOptions,
    follow: Follow | None = None,
) -> dict[str, CaptureRecord | None]:
    """Capture `tables` of `source` from the database's log: up to its current position, or with `follow` until
    stopped. Raises on the first failure; what was published before it stays, and its position is confirmed.

    Following, a database lost once something was published (a restart, a dropped connection) is reconnected to
    after RECONNECT_DELAYS, each logged; a failure before anything was published (a wrong password) is raised."""
    records: dict[str, CaptureRecord | None] = {t.name: None for t in tables}
    if follow is None:
        _run_once(lake, source, tables, dsn, options, records, None)
        return records
    failures, started = 0, time.monotonic()
    while True:
        try:
            _run_once(lake, source, tables, dsn, options, records, follow)
            return records
        except PostgresAccessError as exc:
            if time.monotonic() - started > RECONNECT_RESET_SECONDS:
                failures = 0  # it streamed a while since the last failure: a new outage
            if not any(records.values()) or failures >= len(RECONNECT_DELAYS) or follow.stop.is_set():
                raise
            delay = RECONNECT_DELAYS[failures]
            failures += 1
            log.warning(
                "%s; reconnecting in %g s (attempt %d of %d)", exc.problem, delay, failures, len(RECONNECT_DELAYS)
            )
            if follow.stop.wait(delay):
                return records
            started = time.monotonic()


def _run_once(
    lake: Lake,
    source: Source,
    tables: list[Table],
    dsn: str,
    options: RunOptions,
    records: dict[str, CaptureRecord | None],
    follow: Follow | None,
) -> None:
    """One connection's run of `run_log`, each table's last record put in `records`."""
    endpoint = str(endpoint_of(dsn))
    with tempfile.TemporaryDirectory(prefix="lago-log-", dir=options.workdir) as tmp:
        options.lock.check()
        lake.clear_scratch()
        stores = {t.name: TableStore(lake, t) for t in tables}
        states = {t.name: stores[t.name].settle_then_continue(None)[0] for t in tables}
        conn = connect_postgres(dsn, autocommit=True)
        stream: ReplicationStream | None = None
        try:
            for table in tables:
                _check_table(conn, table)
            checked = current_position(conn)
            name = slot_name(ensure_identity(lake).lake_id, source.name)
            info = slot_info(conn, name)
            published = published_tables(conn, name)
            if info is not None and info.usable and published is not None:
                _check_followed(name, published, tables)
            fresh = [t.name for t in tables if states[t.name].snapshot_key is None]
            if info is None or not info.usable or fresh or ensure_publication(conn, name, tables):
                if info is not None and info.usable:
                    # a table joins: what the slot holds for the others is published first, then a new slot
                    stream = ReplicationStream(dsn, name, name)
                    stream.start()
                    held = [t for t in tables if t.name not in fresh]
                    held_until = current_position(conn)
                    _follow(stream, lake, held, states, options, Path(tmp), records, checked, held_until, None)
                    stream.close()
                if info is not None:
                    why = "its write-ahead log was removed" if info.wal_status == "lost" else "a table has no state"
                    log.warning("slot %s: taken again with a snapshot of every table (%s)", name, why)
                    drop_slot(conn, name)
                elif any(states[t.name].snapshot_key is not None for t in tables):
                    log.warning("slot %s is gone: the lake's state is diffed against a new snapshot", name)
                ensure_publication(conn, name, tables)
                stream = ReplicationStream(dsn, name, name)
                moment = _server_clock(conn)
                consistent, snapshot = stream.create_slot()
                prepared = _load(lake, tables, states, dsn, snapshot, moment, consistent, Path(tmp), options)
                _publish(lake, prepared, options, records)
            else:
                stream = ReplicationStream(dsn, name, name)
            stream.start()
            until = None if follow is not None else current_position(conn)
            try:
                _follow(stream, lake, tables, states, options, Path(tmp), records, checked, until, follow)
            except PostgresAccessError as exc:
                if any(records.values()):
                    raise LogInterruptedError(exc.endpoint, exc.problem) from None
                raise
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), dsn).split())
            raise PostgresAccessError(endpoint, f"following the log failed: {reason}") from None
        finally:
            if stream is not None:
                stream.close()
            conn.close()


def _check_followed(slot: str, published: set[tuple[str, str]], tables: list[Table]) -> None:
    """One slot serves every table of a source: a run that left one out would confirm the slot past its changes,
    which no later run could read again."""
    left_out = sorted(".".join(r) for r in published - {relation_of(t) for t in tables})
    if left_out:
        raise SlotScopeError(slot, tuple(left_out))


def _check_table(conn: psycopg.Connection[tuple[Any, ...]], table: Table) -> None:
    """The declared columns are the database's (and fit), no column is undeclared, and deletes carry the key."""
    resolve_columns(conn, table)
    declared = {c.name.lower() for c in table.columns}
    for column in database_columns(conn, table):
        if column.name.lower() not in declared:
            raise SchemaChangeError(
                table.qualified_name,
                relation_name(table),
                column.name,
                "added",
                f"models/bronze/{table.source}/_{table.source}__sources.yml",
            )
    check_replica_identity(conn, table)


def _server_clock(conn: psycopg.Connection[tuple[Any, ...]]) -> datetime:
    """The server's time before the slot is created: the `_cdc_timestamp` of a snapshot's rows, earlier than the
    commit of any transaction the slot streams afterwards."""
    row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment.astimezone(UTC)


def _capture_id(state: TableState, options: RunOptions) -> str:
    captured_at = options.now().astimezone(UTC)
    last = state.last_capture
    if last is not None and captured_at <= moment_of(last.capture_id):
        captured_at = moment_of(last.capture_id) + timedelta(microseconds=1)
    return capture_id_of(captured_at)


def _load(
    lake: Lake,
    tables: list[Table],
    states: dict[str, TableState],
    dsn: str,
    snapshot_name: str,
    moment: datetime,
    position: int,
    workdir: Path,
    options: RunOptions,
) -> list[PreparedCapture]:
    """Every table read in the new slot's exported snapshot: a full load, or a diff against the lake's state."""
    reader = PostgresReader(dsn, mode="snapshot", snapshot=snapshot_name)
    memory = options.duckdb_memory_limit
    prepared = []
    try:
        for table in tables:
            started = time.monotonic()
            store, state = TableStore(lake, table), states[table.name]
            folder = workdir / "load" / table.name
            folder.mkdir(parents=True)
            snapshot = reader.read(table, CaptureContext(folder, 0, memory))
            capture_id = _capture_id(state, options)
            changes = folder / f"changes_{capture_id}.parquet"
            first = state.last_sequence + 1
            kind: CaptureKind
            verdict = None
            last = state.last_capture
            if state.snapshot_key is None:
                result = cdc.full_load(table, snapshot, moment, first, changes, memory)
                kind = "full-load"
            else:
                baseline = stored_baseline(store, state, last.snapshot_rows if last else 0, folder)
                result = cdc.diff(table, baseline, snapshot, moment, first, changes, memory)
                kind = "cdc" if result.counts.total else "unchanged"
                if kind == "cdc" and last is not None:
                    verdict = judge(table, last.snapshot_rows, result.snapshot_rows, result.counts.deletes)
            stored = snapshot.file if kind != "unchanged" else None
            record = CaptureRecord(
                capture_id=capture_id,
                kind=kind,
                data_key=store.data_key(kind, capture_id) if kind != "unchanged" else None,
                snapshot_key=store.snapshot_key(capture_id) if stored is not None else "",
                first_sequence=first,
                last_sequence=result.last_sequence if result.counts.total else state.last_sequence,
                inserts=result.counts.inserts,
                updates=result.counts.updates,
                deletes=result.counts.deletes,
                snapshot_rows=result.snapshot_rows,
                reader=LOG_READER,
                log_position=format_lsn(position),
            )
            data = changes if record.data_key else None
            prepared.append(PreparedCapture(table, state, record, data, stored, started, verdict))
    finally:
        reader.close()
    return prepared


def _publish(
    lake: Lake, prepared: list[PreparedCapture], options: RunOptions, records: dict[str, CaptureRecord | None]
) -> None:
    """The circuit breaker, then every capture staged before any is published (as `capture.run_tables`)."""
    apply_breaker(lake, prepared, options)
    for item in prepared:
        options.lock.check()
        TableStore(lake, item.table).stage(item)
    for item in prepared:
        options.lock.check()
        record = TableStore(lake, item.table).publish(item)
        log.info(
            "%s: %s from the log, I=%d U=%d D=%d, %d rows, up to %s",
            item.table.qualified_name,
            record.kind,
            record.inserts,
            record.updates,
            record.deletes,
            record.snapshot_rows,
            record.log_position,
        )
        records[item.table.name] = record


def _follow(
    stream: ReplicationStream,
    lake: Lake,
    tables: list[Table],
    states: dict[str, TableState],
    options: RunOptions,
    workdir: Path,
    records: dict[str, CaptureRecord | None],
    checked: int,
    until: int | None,
    follow: Follow | None,
) -> None:
    """Decode the slot's changes into batches and publish each, then confirm its position; return once the
    stream has passed `until` (None: once `follow.stop` is set)."""
    batch = _Batch({relation_of(t): _table_log(lake, t, states[t.name], workdir) for t in tables}, checked=checked)
    batch.reset()
    confirmed = [0, time.monotonic()]  # the position last confirmed, and when

    def publish(position: int) -> None:
        prepared = [p for p in (_prepare(t, workdir, batch.position, options) for t in batch.tables()) if p is not None]
        if prepared:
            _publish(lake, prepared, options, records)
        batch.reset()
        failpoint("before-confirm")
        stream.confirm(position)
        confirmed[:] = [position, time.monotonic()]
        failpoint("after-confirm")

    for item in stream.messages():
        if isinstance(item, tuple):
            batch.feed(item[0])
            if batch.changes >= BATCH_CHANGES and not batch.in_transaction:
                publish(batch.position)
            continue
        if batch.in_transaction:
            continue
        reached = max(item or 0, batch.position)
        if until is not None:
            if item is not None and item >= until:
                publish(reached)
                return
            continue
        assert follow is not None
        due = batch.first_at is not None and time.monotonic() - batch.first_at >= follow.latency
        # with nothing of ours pending, the slot still moves past the log of other databases and tables, so the
        # server can recycle it
        idle = batch.changes == 0 and reached > confirmed[0] and time.monotonic() - confirmed[1] >= follow.latency
        if due or idle or follow.stop.is_set():
            publish(reached)
        if follow.stop.is_set():
            return


def _table_log(lake: Lake, table: Table, state: TableState, workdir: Path) -> _TableLog:
    folder = workdir / "spool" / table.name
    return _TableLog(table, TableStore(lake, table), state, Spool(table, folder), Spool(table, folder))


# -- a table's batch as a change file --------------------------------------------------------------------------------

# DuckDB's memory in a publish, at most (or the run's limit when lower): its sorts, joins and aggregates spill to
# the work folder beyond it, so a capture's peak memory does not grow with the size of a transaction. A step DuckDB
# cannot fit in it (a window over the rows of a very large or wide transaction) is done again within the run's.
PUBLISH_MEMORY_LIMIT = "128MB"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _publish_memory(limit: str) -> str:
    """The smaller of the run's DuckDB memory limit and PUBLISH_MEMORY_LIMIT (a share of the RAM counts as more)."""

    def size(text: str) -> float | None:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
        return float(match.group(1)) * _UNITS[match.group(2).upper()] if match else None

    given, cap = size(limit), size(PUBLISH_MEMORY_LIMIT)
    assert cap is not None
    return limit if given is not None and given < cap else PUBLISH_MEMORY_LIMIT


def _capped(step: Callable[[str], _T], memory: str, options: RunOptions) -> _T:
    """`step` within `memory`; again within the run's limit when DuckDB ran out of the first (each step rewrites
    its own files)."""
    try:
        return step(memory)
    except WorkspaceError as exc:
        if memory == options.duckdb_memory_limit or not isinstance(exc.__cause__, duckdb.OutOfMemoryException):
            raise
        log.warning(
            "a publish step needs more than %s of memory: done again within %s", memory, options.duckdb_memory_limit
        )
        return step(options.duckdb_memory_limit)


def _prepare(log_: _TableLog, workdir: Path, position: int, options: RunOptions) -> PreparedCapture | None:
    """The table's changes of the batch, filled to whole rows, as a change file and the table's next stored state.

    DuckDB reads the spool's parts, casts them and fills them (`_write_changes`): no change passes through Python,
    and DuckDB's memory is capped (PUBLISH_MEMORY_LIMIT)."""
    spool = log_.changes
    if not spool.count:
        return None
    started = time.monotonic()
    table, store, state = log_.table, log_.store, log_.state
    memory = _publish_memory(options.duckdb_memory_limit)
    capture_id = _capture_id(state, options)
    folder = workdir / "log" / table.name / capture_id
    folder.mkdir(parents=True)
    last = state.last_capture
    previous_rows = last.snapshot_rows if last is not None else 0
    # every table the log is followed for was loaded first: it has a stored state
    baseline = stored_baseline(store, state, previous_rows, folder)
    first = state.last_sequence + 1
    changes = folder / f"changes_{capture_id}.parquet"
    counts = _capped(lambda m: _write_changes(table, spool, baseline, first, changes, m), memory, options)
    written = sum(counts.values())
    if not written:
        return None
    after = _capped(lambda m: _rows_after(table, baseline, changes, m, folder), memory, options)
    stored, delta = _capped(
        lambda m: _next_snapshot(table, state, baseline, changes, after, written, folder, m), memory, options
    )
    record = CaptureRecord(
        capture_id=capture_id,
        kind="cdc",
        data_key=store.data_key("cdc", capture_id),
        snapshot_key=store.snapshot_key(capture_id),
        first_sequence=first,
        last_sequence=first + written - 1,
        inserts=counts.get("I", 0),
        updates=counts.get("U", 0),
        deletes=counts.get("D", 0),
        snapshot_rows=after,
        reader=LOG_READER,
        snapshot_delta=delta,
        log_position=format_lsn(position),
    )
    verdict = judge(table, previous_rows, after, counts.get("D", 0)) if spool.truncated else None
    return PreparedCapture(table, state, record, changes, stored, started, verdict)


def log_change_schema(table: Table) -> pa.Schema:
    """A change file from the log: the lake's change file, then each change's commit position (`_cdc_lsn`, the LSN
    of its transaction's commit record), which every reader of the lake leaves aside as an undeclared column."""
    return change_schema(table).append(pa.field(CDC_LSN, pa.int64()))


def _write_changes(
    table: Table, spool: Spool, baseline: cdc.Baseline, first: int, dest: Path, memory: str
) -> dict[str, int]:
    """The spool's changes as the change file `dest`, in order, sequences from `first`; the count of each
    operation written.

    A TRUNCATE cuts the changes into segments: each is written on top of the state the ones before it leave (the
    stored state, then each segment's file), and a TRUNCATE deletes every row of that state."""
    folder = dest.parent
    con = _connect(folder, baseline, memory)
    try:
        con.execute(f"create temp view spool as select * from {spool.relation()}")
        cuts = con.execute(f"select {POSITION} from spool where {OPERATION} = 'T' order by 1").fetchall()
        written: list[Path] = []
        low, sequence = -1, first

        def state() -> cdc.Baseline:
            return cdc.Baseline(baseline.snapshot, (*baseline.deltas, *written), 0, baseline.filesystem)

        for cut in [int(c[0]) for c in cuts] + [None]:
            chunk = folder / f"segment-{len(written)}.parquet"
            count = _write_segment(con, table, state(), low, cut, sequence, chunk, spool.single_precision)
            if count:
                written.append(chunk)
                sequence += count
            if cut is not None:
                chunk = folder / f"segment-{len(written)}.parquet"
                count = _write_truncate(con, table, state(), cut, sequence, chunk)
                if count:
                    written.append(chunk)
                    sequence += count
                low = cut
        if not written:
            return {}
        if len(written) == 1:
            written[0].rename(dest)
        else:
            files = ", ".join(sql_literal(str(w)) for w in written)
            copy_to_parquet(con, f"select * from read_parquet([{files}])", dest, order_by=CDC_SEQUENCE)
        found = con.execute(f"select {CDC_OPERATION}, count(*) from read_parquet({sql_literal(str(dest))}) group by 1")
        return {str(operation): int(count) for operation, count in found.fetchall()}
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, baseline.filesystem)
        if isinstance(exc, duckdb.ConversionException):
            raise DatabaseValueError(
                table.qualified_name, relation_name(table), str(exc).splitlines()[0], from_log=True
            ) from None
        raise
    finally:
        con.close()


def _write_segment(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    state: cdc.Baseline,
    low: int,
    high: int | None,
    first: int,
    dest: Path,
    single_precision: frozenset[str],
) -> int:
    """The spool's changes after position `low` and before `high` (a TRUNCATE's, or None: to the end) as `dest`;
    the rows written.

    A value left to fill (an unchanged TOASTed value, a column a key-only delete lacks) is the key's last value of
    that column: in the changes before it, else in `state`. Only the changes of keys with something to fill go
    through that window; a fill with no live row before it is a delete of a key the lake does not hold (skipped,
    with a warning) or a value the log cannot give (LostToastError)."""
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    columns = ", ".join(quote_identifier(c) for c in table.column_names)
    on = " and ".join(f"x.{quote_identifier(k)} = f.{quote_identifier(k)}" for k in table.primary_key)
    where = f"{OPERATION} <> 'T' and {POSITION} > {low}" + (f" and {POSITION} < {high}" if high is not None else "")
    head = f"{POSITION}, {OPERATION}, {COMMITTED_AT}, {LSN}"
    changes = f"(select {head}, {FILLED}, {_typed(table, 's', single_precision)} from spool as s where {where})"
    # a segment holds no TRUNCATE: its positions follow each other from low + 1
    sequence = f"cast({POSITION} + {first - low - 1} as bigint)"
    con.execute(f"create or replace temp table fill_keys as select distinct {keys} from {changes} where {FILLED} <> 0")
    fills = con.execute("select count(*) from fill_keys").fetchone()
    if fills is not None and fills[0]:
        filled = ", ".join(
            f"case when {FILLED} & {1 << i} = 0 then {quote_identifier(c)} else (last_value(case when {FILLED} & "
            f"{1 << i} = 0 then struct_pack(v := {quote_identifier(c)}) end ignore nulls) over earlier).v end "
            f"as {quote_identifier(c)}"
            for i, c in enumerate(table.column_names)
        )
        lake = cdc.baseline_relation(con, table, state)
        con.execute(
            f"""create or replace temp table chain as
            select {head}, {FILLED}, lag({OPERATION}) over by_key as _previous, {filled}
            from (
                select x.* from {changes} as x semi join fill_keys as f on {on}
                union all
                select -1, 'L', null, null, 0, {columns} from {lake} as x semi join fill_keys as f on {on}
            )
            window by_key as (partition by {keys} order by {POSITION}),
                earlier as (partition by {keys} order by {POSITION} rows between unbounded preceding and 1 preceding)"""
        )
        orphan = f"{OPERATION} <> 'L' and {FILLED} <> 0 and coalesce(_previous, 'D') = 'D'"
        found = con.execute(f"select {OPERATION}, {FILLED}, {keys} from chain where {orphan} order by {POSITION}")
        if _check_orphans(table, found):
            # skipped deletes leave gaps in the positions: the sequences are counted instead
            sequence = f"cast({first} + row_number() over (order by {POSITION}) - 1 as bigint)"
        kept = f"""select {head}, {columns} from {changes} as x anti join fill_keys as f on {on}
            union all
            select {head}, {columns} from chain where {OPERATION} <> 'L' and not ({orphan})"""
        order: str | None = CDC_SEQUENCE
    else:
        # nothing to fill: the changes stream through in the spool's order, each sequence from its position
        kept, order = f"select {head}, {columns} from {changes}", None
    query = f"""select {OPERATION} as {CDC_OPERATION}, {COMMITTED_AT} as {CDC_TIMESTAMP}, {sequence} as {CDC_SEQUENCE},
            {columns}, {LSN} as {CDC_LSN}
        from ({kept})"""
    return copy_to_parquet(con, query, dest, order_by=order)


def _check_orphans(table: Table, found: duckdb.DuckDBPyConnection) -> int:
    """Refuse a value to fill of a key with no live row before it; a delete of such a key is skipped (how many
    were)."""
    skipped = []
    for operation, filled, *key in found.fetchall():
        if operation != "D":
            lost = table.columns[(filled & -filled).bit_length() - 1].name
            raise LostToastError(table.qualified_name, lost, repr(tuple(key)))
        skipped.append(tuple(key))
    if skipped:
        log.warning(
            "%s: %d delete(s) of keys the lake does not hold, skipped: %s",
            table.qualified_name,
            len(skipped),
            ", ".join(repr(k) for k in skipped[:5]) + (", ..." if len(skipped) > 5 else ""),
        )
    return len(skipped)


def _write_truncate(
    con: duckdb.DuckDBPyConnection, table: Table, state: cdc.Baseline, at: int, first: int, dest: Path
) -> int:
    """The TRUNCATE at spool position `at` as `dest`: a delete of every row of `state`, in key order."""
    keys = ", ".join(f"x.{quote_identifier(k)}" for k in table.primary_key)
    columns = ", ".join(f"x.{quote_identifier(c)}" for c in table.column_names)
    query = f"""select 'D' as {CDC_OPERATION}, t.{COMMITTED_AT} as {CDC_TIMESTAMP},
            cast({first} + row_number() over (order by {keys}) - 1 as bigint) as {CDC_SEQUENCE},
            {columns}, t.{LSN} as {CDC_LSN}
        from {cdc.baseline_relation(con, table, state)} as x,
            (select {COMMITTED_AT}, {LSN} from spool where {POSITION} = {at}) as t"""
    return copy_to_parquet(con, query, dest, order_by=CDC_SEQUENCE)


def _connect(folder: Path, baseline: cdc.Baseline, memory: str) -> duckdb.DuckDBPyConnection:
    con = connect(folder, memory_limit=memory)
    if baseline.filesystem is not None:
        con.register_filesystem(baseline.filesystem)
    return con


def _rows_after(table: Table, baseline: cdc.Baseline, changes: Path, memory: str, folder: Path) -> int:
    """The rows the table holds once `changes` applies to its stored state: the stored rows of the keys `changes`
    leaves alone, and each key it touches whose last change is not a delete. Only keys and operations are
    aggregated, not whole rows: its memory does not grow with the width of the table."""
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    on = " and ".join(f"b.{quote_identifier(k)} = t.{quote_identifier(k)}" for k in table.primary_key)
    con = _connect(folder, baseline, memory)
    try:
        row = con.execute(
            f"""with touched as materialized (
                select {keys}, arg_max({CDC_OPERATION}, {CDC_SEQUENCE}) as _last
                from read_parquet({sql_literal(str(changes))}) group by {keys}
            )
            select (select count(*) from {cdc.baseline_relation(con, table, baseline)} as b anti join touched as t
                    on {on})
                + (select count(*) from touched where _last <> 'D')"""
        ).fetchone()
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, baseline.filesystem)
        raise
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def _next_snapshot(
    table: Table,
    state: TableState,
    baseline: cdc.Baseline,
    changes: Path,
    rows: int,
    changed: int,
    folder: Path,
    memory: str,
) -> tuple[Path, bool]:
    """The stored state after this capture: the change file on top of the previous state (the latest version of
    each key wins, see `cdc.baseline_relation`), or a full snapshot once those files grow (as `capture.py`)."""
    grown = state.delta_rows + changed > COMPACT_SHARE * max(rows, 1)
    if grown or len(state.snapshot_deltas) + 1 >= COMPACT_FILES:
        return cdc.compact(table, baseline, changes, rows, folder / "snapshot.parquet", memory), False
    return changes, True
