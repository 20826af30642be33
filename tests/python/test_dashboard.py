"""The dashboard (`python -m orchestration.dashboard`, orchestration/dashboard/) on the published Gold of a quick
start's lake: every number a page prints equals a query on the warehouse, for each drill-down of the cube and each
"as known on" day of the GMV history; the pages load in headless Chromium and keep loading while the next day is
captured and built, and that build passes; readers hold the published tables across two builds; the page says a
table is stale when the lake holds a capture it does not reflect. Screenshots go to env LAGO_MAGO_SCREENSHOTS (the
README's come from there), else to the test's folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from headless_chromium import BrowserError, Chromium, Page, chromium_executable
from streamlit.testing.v1 import AppTest
from support.net import free_port
from support.readme import QuickStart, quick_start_at

from ingestion.freshness import published_freshness
from orchestration.dashboard.gold import CUBE, PublishedGold
from orchestration.dashboard.widgets import number

pytestmark = pytest.mark.dbt

APP = Path(__file__).resolve().parents[2] / "orchestration" / "dashboard" / "app.py"
# each page: its URL path, its script, and the number of figures (metrics) it prints
PAGES = {
    "points": ("", "pages/points_by_day.py", 4),
    "monthly": ("monthly", "pages/monthly_report.py", 4),
    "churn": ("churn", "pages/churn.py", 5),
    "gmv": ("gmv", "pages/gmv_as_known_on.py", 3),
}

# the page is ready when the script has finished (no status widget) and every figure is on screen; it returns
# the figures (label, value), the alerts and captions, and the milliseconds since the navigation started
READY = """(() => {
  if (!document.querySelector('[data-testid="stApp"]')) return null;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return null;
  const metrics = [...document.querySelectorAll('[data-testid="stMetric"]')].map(m => [
    m.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim(),
    m.querySelector('[data-testid="stMetricValue"]')?.innerText.trim()]);
  if (metrics.length < COUNT || metrics.some(([label, value]) => !label || !value)) return null;
  const notes = [...document.querySelectorAll('[data-testid="stAlert"], [data-testid="stCaptionContainer"]')]
    .map(note => note.innerText);
  return {metrics, notes, ms: Math.round(performance.now())};
})()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    """The README's quick start: one simulated day of loyalty and Hotmart, built and published (at the simulator's
    default scale: a smaller one has too few Hotmart purchases for a GMV)."""
    return quick_start_at(tmp_path_factory.mktemp("dashboard"), customers=10_000)


@contextlib.contextmanager
def warehouse(site: QuickStart) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse, read-only, between builds (the expected figures come from it)."""
    connection = duckdb.connect(str(site.warehouse), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


def one(connection: duckdb.DuckDBPyConnection, sql: str, *parameters: object) -> tuple[Any, ...]:
    row = connection.execute(sql, list(parameters)).fetchone()
    assert row is not None
    return tuple(row)


# -- what each page must print, from the warehouse ---------------------------------------------------------------


def expected_points(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """The points page's default: the latest 28 days of the cube's day level."""
    sums = one(
        connection,
        f"""
        select sum(transactions), sum(points_earned), sum(points_spent), sum(points_net)
        from gold.{CUBE}
        where grouping_level = 'day'
            and transaction_date > (select max(transaction_date) from gold.{CUBE}) - interval 28 day
        """,
    )
    labels = ("Transactions", "Points earned", "Points spent", "Points net")
    return [(label, number(value)) for label, value in zip(labels, sums, strict=True)]


def expected_monthly(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """The latest month of the report."""
    latest = one(
        connection,
        "select transactions, active_customers, new_customers, points_net"
        " from gold.gold_points_monthly_report order by month_start_date desc limit 1",
    )
    labels = ("Transactions", "Active customers", "New customers", "Points net")
    return [(label, number(value)) for label, value in zip(labels, latest, strict=True)]


def expected_churn(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Counted from the churn view itself, per customer (not from the summary the page reads)."""
    customers, active, churned, never = one(
        connection,
        """
        select
            count(*),
            count(*) filter (where not is_churned and last_transaction_date is not null),
            count(*) filter (where is_churned),
            count(*) filter (where last_transaction_date is null)
        from gold.gold_customer_churn
        """,
    )
    rate = f"{churned / (active + churned):.1%}" if active + churned else "-"
    return [
        ("Customers", number(customers)),
        ("Active", number(active)),
        ("Churned", number(churned)),
        ("Never transacted", number(never)),
        ("Churn rate", rate),
    ]


def gmv_as_known_on(connection: duckdb.DuckDBPyConnection, month: date, known_on: date) -> Decimal:
    """docs/hotmart.md's "GMV of a month as known on a date", on the warehouse's history."""
    (gmv,) = one(
        connection,
        """
        select coalesce(sum(gmv), 0) from gold.gold_gmv_daily_history
        where order_date >= ? and order_date < ? + interval 1 month
            and valid_from <= ? and (valid_to is null or valid_to > ?)
        """,
        month,
        month,
        known_on,
        known_on,
    )
    return Decimal(gmv)


def gmv_today(connection: duckdb.DuckDBPyConnection, month: date) -> Decimal:
    """Today's GMV of the month, from the warehouse's view of the current rows."""
    (gmv,) = one(
        connection,
        "select coalesce(sum(gmv), 0) from gold.gold_gmv_daily_current"
        " where order_date >= ? and order_date < ? + interval 1 month",
        month,
        month,
    )
    return Decimal(gmv)


def expected_gmv(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """The GMV page's default: the latest month, as known today."""
    (month,) = one(connection, "select max(date_trunc('month', order_date))::date from gold.gold_gmv_daily_history")
    today = datetime.now(UTC).date()
    then, now = gmv_as_known_on(connection, month, today), gmv_today(connection, month)
    return [
        (f"GMV known on {today:%Y-%m-%d}", number(then)),
        ("GMV known today", number(now)),
        ("Restated since", number(now - then)),
    ]


EXPECTED = {"points": expected_points, "monthly": expected_monthly, "churn": expected_churn, "gmv": expected_gmv}


def expected_pages(site: QuickStart) -> dict[str, list[tuple[str, str]]]:
    with warehouse(site) as connection:
        return {page: expected(connection) for page, expected in EXPECTED.items()}


# -- the pages run as scripts (Streamlit's AppTest): every drill-down ----------------------------------------------


def app(site: QuickStart, page: str) -> AppTest:
    tester = AppTest.from_file(str(APP), default_timeout=60)
    tester.run()
    tester.switch_page(PAGES[page][1]).run()
    assert not tester.exception, tester.exception
    return tester


def metrics(tester: AppTest) -> list[tuple[str, str]]:
    return [(metric.label, metric.value) for metric in tester.metric]


def test_every_figure_and_drill_down_equals_the_warehouse(site: QuickStart, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_URI", str(site.project / "lake"))
    expected = expected_pages(site)
    for page in PAGES:
        assert metrics(app(site, page)) == expected[page], page

    # the cube: every category, broken down by source system, reads the finest level, and adds up to the
    # category's own row of the coarser level, day by day
    points = app(site, "points")
    categories = points.selectbox(key="product_category").options
    assert len(categories) > 2, categories  # "All" and at least two categories
    with warehouse(site) as connection:
        first, last = one(connection, f"select min(transaction_date), max(transaction_date) from gold.{CUBE}")
        points.date_input(key="days").set_value((first, last)).run()
        drilled = 0
        for category in categories[1:]:
            points.selectbox(key="product_category").set_value(category).run()
            points.selectbox(key="breakdown").set_value("source_system").run()
            rows = points.dataframe[0].value
            page_rows = sorted(
                (row.transaction_date.date(), row.member, row.transactions, row.points_earned, row.points_spent)
                for row in rows.itertuples()
            )
            warehouse_rows = connection.execute(
                f"""
                select transaction_date, source_system, transactions, points_earned, points_spent
                from gold.{CUBE}
                where grouping_level = 'day_category_source_system' and product_category = ?
                order by all
                """,
                [category],
            ).fetchall()
            assert page_rows == sorted(tuple(row) for row in warehouse_rows), category
            category_total = one(
                connection,
                f"select sum(transactions), sum(points_earned) from gold.{CUBE}"
                " where grouping_level = 'day_category' and product_category = ?",
                category,
            )
            assert (rows["transactions"].sum(), rows["points_earned"].sum()) == category_total, category
            assert metrics(points)[0] == ("Transactions", number(category_total[0]))
            drilled += len(rows)
        assert drilled > 0

        # GMV: for each month, as known on each day a figure changed, the day before the first, and today
        gmv = app(site, "gmv")
        months = gmv.selectbox(key="month").options
        history = connection.execute("select distinct valid_from from gold.gold_gmv_daily_history").fetchall()
        days = [row[0] for row in history]
        assert months and days
        today = datetime.now(UTC).date()
        checked = 0
        for label in months:
            month = datetime.strptime(label, "%B %Y").date()
            gmv.selectbox(key="month").set_value(month).run()
            for known_on in sorted({*days, min(days) - timedelta(days=1), today}):
                gmv.date_input(key="known_on").set_value(known_on).run()
                then, now = gmv_as_known_on(connection, month, known_on), gmv_today(connection, month)
                assert metrics(gmv) == [
                    (f"GMV known on {known_on:%Y-%m-%d}", number(then)),
                    ("GMV known today", number(now)),
                    ("Restated since", number(now - then)),
                ], (month, known_on)
                checked += then > 0
        assert checked > 0, "no month had any GMV known on any day"


def test_a_lake_without_published_tables_says_so_on_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_URI", str(tmp_path / "lake"))
    tester = AppTest.from_file(str(APP), default_timeout=60)
    tester.run()
    for page in PAGES.values():
        tester.switch_page(page[1]).run()
        assert not tester.exception, tester.exception
        assert not tester.metric, [metric.value for metric in tester.metric]
        (info,) = [element.value for element in tester.info]
        assert info.startswith("gold.gold_") and "is not published at" in info and "run `dbt build`" in info, info


# -- the server, in a browser, while the lake moves on ------------------------------------------------------------


def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LAGO_MAGO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load(page: Page, base: str, name: str) -> dict[str, Any]:
    """Open a page and wait until it shows every figure; its figures, notes and load time."""
    path, _, count = PAGES[name]
    page.navigate(f"{base}/{path}")
    shown: dict[str, Any] = page.wait_for(READY.replace("COUNT", str(count)), timeout=60, interval=0.05)
    shown["metrics"] = [tuple(metric) for metric in shown["metrics"]]
    return shown


@contextlib.contextmanager
def dashboard(site: QuickStart, log: Path) -> Iterator[str]:
    """The README's command, in the quick start's folder: `python -m orchestration.dashboard` (its default lake,
    ./lake), on a free port; its address."""
    port = free_port()
    with log.open("w") as output:
        server = subprocess.Popen(
            ["python", "-m", "orchestration.dashboard", "--port", str(port)],
            cwd=site.project,
            env=site.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_pages_load_and_keep_loading_while_the_next_day_is_built(site: QuickStart, tmp_path: Path) -> None:
    if chromium_executable() is None:
        pytest.fail("no Chromium: install Debian's `chromium` (.ci/run does) or set CHROMIUM")
    shots = screenshots(tmp_path)
    lake = str(site.project / "lake")
    with dashboard(site, tmp_path / "dashboard.log") as base, Chromium(tmp_path / "profile", width=1400) as browser:
        page = browser.open_page(height=1000)
        expected = expected_pages(site)
        load_ms = {}
        for name in PAGES:
            shown = load(page, base, name)
            assert shown["metrics"] == expected[name], name
            assert any("fresh" in note for note in shown["notes"]), shown["notes"]
            load_ms[name] = shown["ms"]
        print(f"first loads (ms since navigation, first day): {load_ms}")

        # a reader holds the published tables, and a DuckDB connection on them, across the next two builds
        reader = PublishedGold(lake)
        held = int(reader.query(f"select count(*) as n from {CUBE}", [CUBE])["n"][0])
        first_version = reader.versions([CUBE])[CUBE]

        # the next day is captured: until it is built, the pages say the tables are behind the lake
        captured = site.bash("python -m ingestion")
        assert captured.returncode == 0, captured.stderr[-3000:]
        shown = load(page, base, "points")
        assert any("stale" in note and "loyalty.transacoes" in note for note in shown["notes"]), shown["notes"]
        assert {row.table: row.status for row in published_freshness(lake)}[f"gold.{CUBE}"] == "stale"

        # the build runs while the pages are loaded again and again: each load shows every figure, the build passes
        build = subprocess.Popen(
            ["bash", "-c", "dbt build --target dev"],
            cwd=site.project,
            env=site.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        loads = 0
        try:
            while build.poll() is None:
                load(page, base, list(PAGES)[loads % len(PAGES)])
                loads += 1
        except BrowserError:
            build.kill()
            raise
        output = build.communicate()[0]
        assert build.returncode == 0, output[-4000:]
        assert loads >= 2, f"the build ended before the pages loaded twice ({loads})"
        print(f"pages loaded while the build ran: {loads}")

        # after it: fresh, the new versions, every figure equal to the warehouse again
        expected = expected_pages(site)
        for name in PAGES:
            shown = load(page, base, name)
            assert shown["metrics"] == expected[name], name
            time.sleep(0.5)  # the charts draw after the figures
            page.screenshot(shots / f"dashboard_{name}.png")
        assert all(row.status == "fresh" for row in published_freshness(lake))

        # the held reader saw the first version until it asked again, then the new one; a third build passes too
        assert reader.query(f"select count(*) as n from {CUBE}", [CUBE])["n"][0] >= held
        assert reader.versions([CUBE])[CUBE] > first_version
        again = site.bash("python -m ingestion && dbt build --target dev")
        assert again.returncode == 0, again.stdout[-4000:]
        assert int(reader.query(f"select count(*) as n from {CUBE}", [CUBE])["n"][0]) > 0
        reader.close()
