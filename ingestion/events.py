"""One event run: for each table of an `events` source, append the newly arrived events to the lake.

An events source (`meta.capture: events`, e.g. Hotmart) is not diffed: its rows already are changes. Each run
publishes one file per table,

    raw/<source>/events/<table>/<table>_<batch id>.parquet

holding `_ingested_at` (arrival time, UTC), `_batch_id` (the run's id, also in the file name) and the table's
declared columns, with an explicit Arrow schema. The steps and the crash recovery mirror `capture.py`:

1. the reader writes the new events to a local file; for a reader that re-reads its whole input (a CSV
   folder), rows already published are dropped, by a fingerprint set kept in the lake as the table's
   "snapshot" and staged under `_ingestion/` (write-once);
2. `pending.json` records the batch;
3. the events file is published under `raw/` (write-once, atomic);
4. `state.json` advances;
5. `pending.json` and the previous fingerprint set are removed.

A rerun first settles a crashed batch: committed when its file was published, otherwise discarded and read
again, so the lake ends with the events of a run that never crashed, none lost, none duplicated.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ingestion.capture import RunOptions, run_tables
from ingestion.catalog import EVENT_BATCH_ID, EVENT_INGESTED_AT, Source, Table
from ingestion.duck import check_io, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import BadEventsError, EventsReadError
from ingestion.lake import Lake
from ingestion.readers.base import EventContext, EventReader

if TYPE_CHECKING:
    import pyarrow as pa
from ingestion.state import CaptureKind, CaptureRecord, capture_id_of, moment_of
from ingestion.table_store import PreparedCapture, TableStore, load_state

log = logging.getLogger(__name__)

EVENTS_KIND: CaptureKind = "events"
NO_EVENTS_KIND: CaptureKind = "no-events"
FINGERPRINT = "_fingerprint"


def event_schema(table: Table) -> pa.Schema:
    """The lake schema of an events file; fixed, so an all-NULL column is still typed."""
    import pyarrow as pa

    return pa.schema(
        [
            # every column is OPTIONAL in the file, as DuckDB writes it; these two are never NULL (checked)
            pa.field(EVENT_INGESTED_AT, pa.timestamp("us", tz="UTC")),
            pa.field(EVENT_BATCH_ID, pa.string()),
            *table.schema,
        ]
    )


def _check_events(con: duckdb.DuckDBPyConnection, table: Table, reader: EventReader) -> None:
    """Refuse a batch with events that have no arrival time or no key; nothing is published."""
    missing = " or ".join(f"{quote_identifier(c)} is null" for c in (EVENT_INGESTED_AT, *table.primary_key))
    (count,) = con.execute(f"select count(*) from new_events where {missing}").fetchall()[0]
    if count:
        raise BadEventsError(table.qualified_name, reader.name, int(count), table.primary_key)


def capture_events(
    lake: Lake,
    table: Table,
    reader: EventReader,
    workdir: Path,
    batch_moment: datetime,
    day: int | None,
    floor: datetime | None,
    memory_limit: str,
) -> PreparedCapture | CaptureRecord:
    started = time.monotonic()
    store = TableStore(lake, table)
    state, recovered = store.settle_then_continue(day)
    if recovered is not None:
        return recovered

    last = state.last_capture
    if last is not None and batch_moment <= moment_of(last.capture_id):
        batch_moment = moment_of(last.capture_id) + timedelta(microseconds=1)
    batch_id = capture_id_of(batch_moment)
    table_dir = workdir / table.source / table.name
    table_dir.mkdir(parents=True, exist_ok=True)
    raw = reader.read(table, EventContext(table_dir, batch_moment, day or 0, memory_limit))

    events = table_dir / f"events_{batch_id}.parquet"
    fingerprints: Path | None = None
    columns = ", ".join(quote_identifier(c) for c in table.column_names)
    con = connect(table_dir, memory_limit=memory_limit)
    try:
        con.execute(f"create temp view read_events as select * from read_parquet({sql_literal(str(raw))})")
        _clamp_arrivals(con, table, floor)
        if reader.skip_published:
            # a row's fingerprint covers its declared columns, not its arrival: the same event read again later
            # is the same event, and was published the first time it was read
            fingerprint = f"md5(cast(row({columns}) as varchar))"
            con.execute(f"create temp table fingerprinted as select *, {fingerprint} as {FINGERPRINT} from arrived")
            if state.snapshot_key:
                published = lake.local_path(state.snapshot_key) or lake.download(
                    state.snapshot_key, table_dir / "published.parquet"
                )
                con.execute(f"create temp view published as select * from read_parquet({sql_literal(str(published))})")
            else:
                con.execute(f"create temp table published ({FINGERPRINT} varchar)")
            con.execute(
                f"create temp view new_events as select * exclude ({FINGERPRINT}) from fingerprinted "
                f"where {FINGERPRINT} not in (select {FINGERPRINT} from published)"
            )
            fingerprints = table_dir / f"published_{batch_id}.parquet"
            con.execute(
                f"copy (select {FINGERPRINT} from published union select {FINGERPRINT} from fingerprinted "
                f"order by 1) to {sql_literal(str(fingerprints))} (format parquet, compression snappy)"
            )
        else:
            con.execute("create temp view new_events as select * from arrived")
        _check_events(con, table, reader)
        # written by DuckDB itself, every column cast to its declared type (the lake schema of `event_schema`)
        ingested_at = quote_identifier(EVENT_INGESTED_AT)
        typed = ", ".join(
            f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns
        )
        rows = copy_to_parquet(
            con,
            f"select cast({ingested_at} as timestamptz) as {ingested_at}, "
            f"cast({sql_literal(batch_id)} as varchar) as {EVENT_BATCH_ID}, {typed} from new_events",
            events,
            order_by=ingested_at,
        )
        (latest,) = con.execute(f"select max({quote_identifier(EVENT_INGESTED_AT)}) from new_events").fetchall()[0]
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        raise EventsReadError(table.qualified_name, str(exc)) from exc
    finally:
        con.close()

    kind = EVENTS_KIND if rows else NO_EVENTS_KIND
    record = CaptureRecord(
        capture_id=batch_id,
        kind=kind,
        data_key=store.data_key("events", batch_id) if rows else None,
        snapshot_key=store.fingerprints_key(batch_id) if fingerprints is not None else "",
        first_sequence=state.last_sequence + 1,
        last_sequence=state.last_sequence + rows,
        inserts=rows,
        updates=0,
        deletes=0,
        snapshot_rows=state.last_sequence + rows,
        reader=reader.name,
        day=day,
        last_arrival=_latest_arrival(latest, floor),
    )
    return PreparedCapture(table, state, record, events if rows else None, fingerprints, started)


def _latest_arrival(latest: datetime | None, floor: datetime | None) -> str | None:
    moment = latest.astimezone(UTC) if latest is not None else floor
    return moment.isoformat() if moment is not None else None


def source_arrival_floor(lake: Lake, source: Source) -> datetime | None:
    """The latest arrival published for any table of the source: Gold combines its tables, so a late
    product_item must not backdate itself below a purchase already published either."""
    floors = [arrival_floor(load_state(lake, t).captures) for t in source.tables.values()]
    return max((f for f in floors if f is not None), default=None)


def arrival_floor(captures: list[CaptureRecord]) -> datetime | None:
    """The latest arrival already published for the table; None before its first batch.

    Batches from before arrivals were recorded count with their batch time, which is never earlier than the
    arrivals they published (a clock arrival is the batch time; a column arrival lies in the past).
    """
    moments = [
        datetime.fromisoformat(c.last_arrival) if c.last_arrival else moment_of(c.capture_id)
        for c in captures
        if c.kind == EVENTS_KIND or c.last_arrival
    ]
    return max(moments, default=None)


def _clamp_arrivals(con: duckdb.DuckDBPyConnection, table: Table, floor: datetime | None) -> None:
    """An event never arrives before what the lake already knew: a column arrival earlier than the latest
    published arrival is stamped just after it. Otherwise a late event would backdate itself into days whose
    answers were already given (the GMV of a day as known on that day would change)."""
    arrival = quote_identifier(EVENT_INGESTED_AT)
    if floor is None:
        con.execute("create temp view arrived as select * from read_events")
        return
    after = sql_literal((floor + timedelta(microseconds=1)).isoformat())
    (late,) = con.execute(
        f"select count(*) from read_events where {arrival} <= cast({after} as timestamptz)"
    ).fetchall()[0]
    if late:
        log.warning(
            "%s: %d event(s) carry an arrival time before the latest one already published (%s); they are "
            "stamped as arriving just after it, so no answer already given changes",
            table.qualified_name,
            late,
            floor.isoformat(),
        )
    con.execute(
        f"create temp view arrived as select * replace (greatest({arrival}, cast({after} as timestamptz)) "
        f"as {arrival}) from read_events"
    )


def run_events(
    lake: Lake,
    source: Source,
    tables: list[Table],
    reader: EventReader,
    options: RunOptions,
) -> dict[str, CaptureRecord | None]:
    """Append the new events of `tables`, holding the lake's lock. Raises on the first failing table."""
    # one batch id for the run's tables (bumped per table if a table's last batch is newer)
    batch_moment = options.now().astimezone(UTC)

    def describe(record: CaptureRecord) -> str:
        return f"{record.inserts} new event(s), {record.snapshot_rows} in the lake, batch {record.capture_id}"

    floors: list[datetime | None] = []

    def prepare(table: Table, workdir: Path, day: int | None) -> PreparedCapture | CaptureRecord:
        if not floors:
            # taken under the lock, before any table settles a crashed batch: a rerun after a crash then clamps
            # exactly as the run that crashed did
            floors.append(source_arrival_floor(lake, source))
        return capture_events(lake, table, reader, workdir, batch_moment, day, floors[0], options.duckdb_memory_limit)

    return run_tables(
        lake,
        tables,
        reader.simulated_days,
        options,
        prepare,
        describe,
    )
