"""How fresh each published table is, for the people reading it while the lake moves on.

A table is as fresh as the last build that published it (`published_tables.BuildRecord`): that build saw a number of
files of each source table upstream of it, counted as it started. A source table with more files in the lake now
has a capture the table does not reflect yet: the table is stale until the next build. The last capture of each
source table comes from its capture log, so a capture that found nothing new (no file) still counts as fresh news:
the source was looked at, and the table is current with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ingestion.catalog import Catalog, load_catalog
from ingestion.lake import Lake
from ingestion.published_tables import BuildRecord, PublishedTables
from ingestion.state import moment_of
from ingestion.table_store import TableStore

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


def published_freshness(lake_uri: str, catalog: Catalog | None = None) -> list[TableFreshness]:
    """The freshness of every table published into the lake at `lake_uri` (the project's declared sources by
    default, for the capture logs)."""
    tables = PublishedTables(lake_uri)
    records = tables.builds()
    if not records:
        return []
    catalog = catalog or load_catalog()
    lake = tables.lake
    sources: dict[str, tuple[datetime | None, int]] = {}
    return [_freshness(record, lake, catalog, sources) for record in records]


def _freshness(
    record: BuildRecord, lake: Lake, catalog: Catalog, known: dict[str, tuple[datetime | None, int]]
) -> TableFreshness:
    sources = []
    for mark in record.sources:
        if mark.table not in known:
            known[mark.table] = _source_now(lake, catalog, mark.table)
        last_capture, files = known[mark.table]
        sources.append(SourceFreshness(mark.table, last_capture, files, mark.files))
    return TableFreshness(
        table=f"{record.schema}.{record.table}",
        built_at=datetime.fromisoformat(record.built_at),
        version=record.version,
        sources=tuple(sources),
    )


def _source_now(lake: Lake, catalog: Catalog, qualified: str) -> tuple[datetime | None, int]:
    """A source table's last capture (from its capture log) and its files in the lake now."""
    source_name, _, table_name = qualified.partition(".")
    store = TableStore(lake, catalog.source(source_name).table(table_name))
    last = store.load_state().last_capture
    return (moment_of(last.capture_id) if last else None), len(store.published_keys())
