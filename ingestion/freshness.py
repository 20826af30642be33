"""How fresh each published table is, for the people reading it while the lake moves on.

A table is as fresh as the last build that published it (`published_tables.BuildRecord`): that build saw a number of
files of each source table upstream of it, counted as it started. A source table with more files in the lake now
has a capture the table does not reflect yet: the table is stale until the next build. The last capture of each
source table comes from its capture log, so a capture that found nothing new (no file) still counts as fresh news:
the source was looked at, and the table is current with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ingestion.catalog import Catalog, load_catalog
from ingestion.lake import Lake
from ingestion.published_tables import BuildRecord, PublishedTables, SourceMark
from ingestion.state import moment_of
from ingestion.table_store import DATA_KINDS, TableStore

# a published data file: raw/<source>/<kind>/<table>/<table>_<capture id>.parquet (table_store.py's data_key)
_DATA_FILE = re.compile(r"raw/([^/]+)/([^/]+)/([^/]+)/[^/]*?(\d{8}_\d{6}_\d{6})?\.parquet")

FreshnessStatus = Literal["fresh", "stale"]


@dataclass(frozen=True)
class SourceFreshness:
    """One source table upstream of a published table: its last capture, and its files now and at the build."""

    table: str
    last_capture: datetime | None
    files: int
    files_seen: int

    @property
    def unseen(self) -> int:
        """Files captured since the build started (never negative: a file the lake lost is not news)."""
        return max(self.files - self.files_seen, 0)


@dataclass(frozen=True)
class TableFreshness:
    """A published table: its last build, and the sources it was built from as they are now."""

    table: str
    built_at: datetime
    version: int
    sources: tuple[SourceFreshness, ...]

    @property
    def status(self) -> FreshnessStatus:
        return "stale" if any(source.unseen for source in self.sources) else "fresh"

    @property
    def last_capture(self) -> datetime | None:
        moments = [source.last_capture for source in self.sources if source.last_capture is not None]
        return max(moments) if moments else None

    def describe(self) -> str:
        """`fresh`, or what the table does not reflect yet."""
        behind = [f"{source.unseen} of {source.table}" for source in self.sources if source.unseen]
        if not behind:
            return "fresh"
        return "stale: built before the lake's last captures (" + ", ".join(behind) + " not in it yet)"


def lake_marks(lake: Lake) -> dict[str, SourceMark]:
    """Each source table's published data files in the lake now (`<source>.<table>`: how many, the newest capture),
    from one listing of `raw/`. A build takes them as it starts (the dbt plugin), a reader compares them with now."""
    counts: dict[str, int] = {}
    newest: dict[str, str] = {}
    for info in lake.list("raw/"):
        match = _DATA_FILE.fullmatch(info.key)
        if match is None or match.group(2) not in DATA_KINDS:
            continue
        table = f"{match.group(1)}.{match.group(3)}"
        counts[table] = counts.get(table, 0) + 1
        if match.group(4):
            moment = moment_of(match.group(4)).isoformat()
            newest[table] = max(newest.get(table, moment), moment)
    return {table: SourceMark(table, files, newest.get(table)) for table, files in sorted(counts.items())}


def published_freshness(lake_uri: str, catalog: Catalog | None = None) -> list[TableFreshness]:
    """The freshness of every table published into the lake at `lake_uri` (the project's declared sources by
    default, for the capture logs)."""
    tables = PublishedTables(lake_uri)
    records = tables.builds()
    if not records:
        return []
    catalog = catalog or load_catalog()
    lake = tables.lake
    marks = lake_marks(lake)
    last: dict[str, datetime | None] = {}
    return [_freshness(record, lake, catalog, marks, last) for record in records]


def _freshness(
    record: BuildRecord,
    lake: Lake,
    catalog: Catalog,
    marks: dict[str, SourceMark],
    last: dict[str, datetime | None],
) -> TableFreshness:
    sources = []
    for seen in record.sources:
        if seen.table not in last:
            last[seen.table] = _last_capture(lake, catalog, seen.table)
        now = marks.get(seen.table)
        sources.append(SourceFreshness(seen.table, last[seen.table], now.files if now else 0, seen.files))
    return TableFreshness(
        table=f"{record.schema}.{record.table}",
        built_at=datetime.fromisoformat(record.built_at),
        version=record.version,
        sources=tuple(sources),
    )


def _last_capture(lake: Lake, catalog: Catalog, qualified: str) -> datetime | None:
    """A source table's last capture, from its capture log (a capture that found nothing new included)."""
    source_name, _, table_name = qualified.partition(".")
    last = TableStore(lake, catalog.source(source_name).table(table_name)).load_state().last_capture
    return moment_of(last.capture_id) if last else None
