"""End to end for Hotmart: events ingested into a lake, `dbt build --target dev`, the immutable GMV history.

- The case's sample, each event arriving at its transaction_datetime: the GMV of a month as known on a date,
  worked out by hand, and a --full-refresh that reproduces every row.
- The simulator over many days, with re-sends, late and stale arrivals: incremental builds never change a past
  answer, a rebuild reproduces the history, and every day's answer equals a naive recomputation from the raw
  events (the state of every purchase on every day), which the history only compresses.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import ingest
from support.dbt import Dbt
from test_hotmart_events import HOTMART, TABLES, sample_folder

pytestmark = pytest.mark.dbt

HOTMART_MODELS = "+path:models/gold/hotmart"

HISTORY = "select * exclude (_loaded_at) from gold.gold_gmv_daily_history order by all"

# docs/hotmart.md: "GMV of a month as known on a date"
MONTH_AS_KNOWN_ON = """
select subsidiary, sum(gmv) as gmv
from gold.gold_gmv_daily_history
where
    order_date >= ? and order_date < ? + interval 1 month
    and valid_from <= ?
    and (valid_to is null or valid_to > ?)
group by subsidiary
"""


def month_as_known_on(site: Dbt, month: date, known_on: date) -> dict[str, Decimal]:
    rows = site.query(MONTH_AS_KNOWN_ON, month, month, known_on, known_on)
    return {str(subsidiary): gmv for subsidiary, gmv in rows}


def test_case_sample_gmv_as_known_on_dates(tmp_path: Path) -> None:
    site = Dbt.at(tmp_path)
    folder = sample_folder(tmp_path / "csv")
    arrival = ("--arrival-column", "transaction_datetime")
    result = ingest(site.lake, *HOTMART, "--from", "csv", "--path", str(folder), *arrival)
    assert result.returncode == 0, result.stderr
    site.build("--select", HOTMART_MODELS, check=True)

    january, february = date(2023, 1, 1), date(2023, 2, 1)
    expected = {
        # purchase 55: its extra info arrives on 01-23 and completes it; value 50.00, corrected to 55.00 on 07-12
        (january, date(2023, 1, 22)): {},
        (january, date(2023, 1, 23)): {"nacional": Decimal("50.00")},
        (january, date(2023, 3, 31)): {"nacional": Decimal("50.00")},
        (january, date(2023, 7, 11)): {"nacional": Decimal("50.00")},
        (january, date(2023, 7, 12)): {"nacional": Decimal("55.00")},
        (january, date.today()): {"nacional": Decimal("55.00")},
        # purchase 69: complete on 02-28 as nacional, internacional from 03-12; earlier dates keep nacional
        (february, date(2023, 2, 27)): {},
        (february, date(2023, 2, 28)): {"nacional": Decimal("2000.00")},
        (february, date(2023, 3, 11)): {"nacional": Decimal("2000.00")},
        (february, date(2023, 3, 12)): {"internacional": Decimal("2000.00")},
        (february, date.today()): {"internacional": Decimal("2000.00")},
    }
    for (month, known_on), gmv in expected.items():
        assert month_as_known_on(site, month, known_on) == gmv, (month, known_on)
    # purchase 56 (release_date NULL) never counts
    assert site.query("select count(*) from gold.gold_gmv_daily_history where order_date = '2023-01-25'") == [(0,)]
    current = site.query("select * from gold.gold_gmv_daily_current order by all")
    assert current == [
        (date(2023, 1, 20), "nacional", Decimal("55.00"), date(2023, 7, 12)),
        (date(2023, 2, 26), "internacional", Decimal("2000.00"), date(2023, 3, 12)),
    ]

    history = site.query(HISTORY)
    site.build("--select", HOTMART_MODELS, "--full-refresh", check=True)
    assert site.query(HISTORY) == history


# A naive oracle: the state of every purchase at the end of every day, straight from the raw lake files.
NAIVE_DAILY_GMV = """
with
events as (
    select 'purchase' as kind, purchase_id, transaction_datetime, _ingested_at, order_date, release_date,
        null::decimal(18, 2) as purchase_value, null::varchar as subsidiary
    from read_parquet(?)
    union all
    select 'product_item', purchase_id, transaction_datetime, _ingested_at, null, null, purchase_value, null
    from read_parquet(?)
    union all
    select 'purchase_extra_info', purchase_id, transaction_datetime, _ingested_at, null, null, null, subsidiary
    from read_parquet(?)
),
days as (
    select cast(range as date) as known_on
    from range(date '2023-01-01', (select max(_ingested_at)::date + 1 from events), interval 1 day)
),
latest as (
    select days.known_on, events.*
    from days join events on cast(events._ingested_at as date) <= days.known_on
    qualify row_number() over (
        partition by days.known_on, events.kind, events.purchase_id
        order by events.transaction_datetime desc, events._ingested_at desc
    ) = 1
),
purchases as (
    select known_on, purchase_id,
        any_value(order_date) filter (kind = 'purchase') as order_date,
        bool_or(kind = 'purchase' and release_date is not null) as is_released,
        any_value(purchase_value) filter (kind = 'product_item') as purchase_value,
        any_value(subsidiary) filter (kind = 'purchase_extra_info') as subsidiary,
        count(*) as records
    from latest group by known_on, purchase_id
)
select known_on, order_date, subsidiary, sum(purchase_value) as gmv
from purchases where records = 3 and is_released
group by all
order by all
"""

HISTORY_AS_DAILY = """
select days.known_on, h.order_date, h.subsidiary, h.gmv
from (select distinct known_on from naive) as days
join gold.gold_gmv_daily_history as h
    on h.valid_from <= days.known_on and (h.valid_to is null or h.valid_to > days.known_on)
order by all
"""


def test_simulated_stream_end_to_end_immutable_and_equal_to_a_naive_recomputation(tmp_path: Path) -> None:
    site = Dbt.at(tmp_path)
    lake = Path(site.lake)
    answers: dict[int, list[tuple[object, ...]]] = {}
    for run in range(1, 41):
        result = ingest(lake, *HOTMART, "--scale", "600", "--seed", "11")
        assert result.returncode == 0, result.stderr
        if run in (10, 25, 40):
            site.build("--select", HOTMART_MODELS, check=True)
            answers[run] = site.query(HISTORY)

    # the lake holds identical re-sends; Bronze holds each event once
    raw = site.query(f"select count(*) from read_parquet('{lake}/raw/hotmart/events/*/*.parquet')")[0][0]
    bronze = site.query(
        "select (select count(*) from bronze.bronze_hotmart__purchase)"
        " + (select count(*) from bronze.bronze_hotmart__product_item)"
        " + (select count(*) from bronze.bronze_hotmart__purchase_extra_info)",
    )[0][0]
    assert isinstance(raw, int) and isinstance(bronze, int) and 0 < bronze < raw

    # incremental builds never change the past: every row closed before a build is kept as it was, and every
    # answer as known on a day before that build's last arrival day is unchanged
    final = set(answers[40])
    for run in (10, 25):
        for row in answers[run]:
            if not row[5]:  # is_current
                assert row in final
            else:
                assert any(r[:4] == row[:4] for r in final), row

        def known_on(rows: list[tuple[object, ...]], day: date) -> set[tuple[object, ...]]:
            return {r[:3] for r in rows if r[3] <= day and (r[4] is None or r[4] > day)}  # type: ignore[operator]

        for offset in range(run):
            day = date(2023, 1, 1 + offset)
            assert known_on(answers[run], day) == known_on(answers[40], day), day

    # a rebuild from the raw events reproduces the history exactly
    site.build("--select", HOTMART_MODELS, "--full-refresh", check=True)
    assert site.query(HISTORY) == answers[40]

    # and the history is the naive day-by-day answer, compressed
    files = [str(lake / "raw/hotmart/events" / table / "*.parquet") for table in TABLES]
    with site.connect() as con:
        con.execute("set timezone = 'UTC'")
        naive = con.execute(NAIVE_DAILY_GMV, files).fetchall()
        con.execute(f"create temp table naive as {NAIVE_DAILY_GMV}", files)
        from_history = con.execute(HISTORY_AS_DAILY).fetchall()
    assert naive and from_history == naive
    assert len(answers[40]) < len(naive)  # SCD2 grows with changes, not with days x dates


# ---------------------------------------------------------------------------------------------------------------
# The invariant of the incremental models: any delivery order of the event files (late files, re-sent copies
# named to sort before or after the original) and any build cadence end equal to a --full-refresh of the lake.

STAGED_DAYS = 12
# every Hotmart model, with the columns a load stamps (its wall-clock time) left out
HOTMART_RELATIONS = {
    "bronze.bronze_hotmart__purchase": "_loaded_at",
    "bronze.bronze_hotmart__product_item": "_loaded_at",
    "bronze.bronze_hotmart__purchase_extra_info": "_loaded_at",
    "silver.silver_hotmart__purchase_versions": "_loaded_at",
    "gold.gold_gmv_daily_history": "_loaded_at",
    "gold.gold_gmv_daily_current": None,
}


@pytest.fixture(scope="module")
def staged_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated days of events, ingested once: the property test delivers its files in other orders."""
    lake = tmp_path_factory.mktemp("staged") / "lake"
    for _ in range(STAGED_DAYS):
        result = ingest(lake, *HOTMART, "--scale", "1500", "--seed", "7")
        assert result.returncode == 0, result.stderr
    return lake


def hotmart_tables(site: Dbt) -> dict[str, list[tuple[object, ...]]]:
    with site.connect() as con:
        return {
            relation: con.execute(
                f"select * {f'exclude ({excluded})' if excluded else ''} from {relation} order by all"
            ).fetchall()
            for relation, excluded in HOTMART_RELATIONS.items()
        }


@st.composite
def deliveries(draw: st.DrawFn, files: list[str]) -> tuple[list[tuple[str, str]], set[int]]:
    """(lake file, name to deliver it as) in delivery order, and after which deliveries a build runs."""
    lateness = draw(st.lists(st.sampled_from([0, 0, 0, 0, 2, 5, 12]), min_size=len(files), max_size=len(files)))
    order = [f for _, f in sorted(zip([i + late for i, late in enumerate(lateness)], files, strict=True))]
    delivered = [(f, f) for f in order]
    for index in draw(st.lists(st.integers(0, len(order) - 1), max_size=3)):
        # a re-sent copy of a file, delivered later, named to sort after or before the original
        original = delivered[index][0]
        folder, name = original.rsplit("/", 1)
        table = folder.rsplit("/", 1)[1]
        batch = name.removeprefix(f"{table}_").removesuffix(".parquet")
        # a lake name (`<table>_<capture time>`) in another year: one that sorts after every file, or before
        copy = f"{table}_{draw(st.sampled_from(['2999', '1999']))}{batch[4:]}.parquet"
        delivered.insert(draw(st.integers(index + 1, len(delivered))), (original, f"{folder}/{copy}"))
    builds = draw(st.sets(st.integers(0, len(delivered) - 2), max_size=3))
    return delivered, builds


def lake_files(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in (lake / "raw" / "hotmart" / "events").glob("*/*.parquet"))


def assert_incremental_equals_full_refresh(
    staged_lake: Path, delivered: list[tuple[str, str]], builds: set[int]
) -> None:
    """Deliver the staged files in this order, build after the given deliveries and at the end, then rebuild."""
    with tempfile.TemporaryDirectory() as folder:
        site = Dbt.at(Path(folder))
        lake = Path(site.lake)
        # the lake's identity only: files arrive here out of the capture log's order, as a foreign sender's would,
        # and a log listing files not yet delivered would (rightly) stop the build
        (lake / "_ingestion").mkdir(parents=True)
        shutil.copy(staged_lake / "_ingestion" / "lake.json", lake / "_ingestion" / "lake.json")
        for position, (original, name) in enumerate(delivered):
            (lake / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staged_lake / original, lake / name)
            if position in builds or position == len(delivered) - 1:
                site.run("--select", HOTMART_MODELS, check=True)
        incremental = hotmart_tables(site)
        site.run("--select", HOTMART_MODELS, "--full-refresh", check=True)
        rebuilt = hotmart_tables(site)
    assert incremental["gold.gold_gmv_daily_history"], "the lake must yield some GMV"
    for relation, rows in rebuilt.items():
        assert incremental[relation] == rows, relation


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_delivery_order_and_build_cadence_equals_a_full_refresh(staged_lake: Path, data: st.DataObject) -> None:
    delivered, builds = data.draw(deliveries(lake_files(staged_lake)))
    assert_incremental_equals_full_refresh(staged_lake, delivered, builds)


def test_days_delivered_late_after_a_build_equal_a_full_refresh(staged_lake: Path) -> None:
    """The second half of the days first and built, then the first half: the re-sends held from the later days
    are replaced by their earlier originals, so purchases gain earlier versions and lose later ones."""
    halves: tuple[list[str], list[str]] = ([], [])
    for table in TABLES:
        # a table's files sort by batch, one batch a simulated day
        files = [f for f in lake_files(staged_lake) if f.split("/")[-2] == table]
        halves[0].extend(files[: len(files) // 2])
        halves[1].extend(files[len(files) // 2 :])
    delivered = [(f, f) for f in halves[1] + halves[0]]
    assert_incremental_equals_full_refresh(staged_lake, delivered, {len(halves[1]) - 1})
