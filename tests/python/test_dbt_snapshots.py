"""The restatement history of published Gold: `gold_points_monthly_report_snapshot` (a dbt snapshot) keeps a
version of a month each time a build changes its figures, and `gold_points_monthly_restatements` says when and
by how much.

The source is a folder of CSV extracts captured before each build: December's only transaction is corrected
(a closed month restated) while January gains one, then nothing changes, then December's transaction is deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.cli import csv_args, ingest
from support.dbt import Dbt

pytestmark = pytest.mark.dbt

CUSTOMER = "0a1b2c3d-0000-4000-8000-000000000001"
HEADERS = {
    "clientes.csv": "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao",
    "produtos.csv": "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto",
    "transacoes.csv": "IdTransacao;IdCliente;DtCriacao;QtdePontos;DescSistemaOrigem",
}
REPORT = (
    "select month_start_date, transactions, points_earned, points_spent, points_net "
    "from gold.gold_points_monthly_report order by 1"
)


def extract(folder: Path, transactions: dict[str, tuple[str, int]]) -> None:
    """The CSV files of one customer, one product and `transactions` (id -> (time, points)); transactions
    without product lines."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "clientes.csv": [f"{CUSTOMER};1;1;0;0;0;100;2024-11-01 10:00:00.000;2024-11-01 10:00:00.000"],
        "produtos.csv": ["1;ChatMessage;Mensagem no chat;chat"],
        "transacoes.csv": [f"{key};{CUSTOMER};{at};{points};twitch" for key, (at, points) in transactions.items()],
    }
    for name, header in HEADERS.items():
        (folder / name).write_text("\n".join([header, *rows[name]]) + "\n", encoding="utf-8")


def capture_and_build(site: Dbt, folder: Path, transactions: dict[str, tuple[str, int]]) -> list[tuple[Any, ...]]:
    """Capture the extracts, build, and return the monthly report as published."""
    extract(folder, transactions)
    captured = ingest(site.lake, *csv_args(folder, "clientes,produtos,transacoes"))
    assert captured.returncode == 0, captured.stderr[-3000:]
    site.build("--select", "source:loyalty+", check=True)
    return site.query(REPORT)


def test_restatements_of_published_months(tmp_path: Path) -> None:
    site = Dbt.at(tmp_path)
    folder = tmp_path / "extracts"
    december, january = "2024-12-20 10:00:00.000", "2025-01-05 12:00:00.000"
    first = capture_and_build(site, folder, {"t1": (december, 10), "t2": (january, 5)})
    assert [(str(m), n, e, s) for m, n, e, s, _ in first] == [("2024-12-01", 1, 10, 0), ("2025-01-01", 1, 5, 0)]
    assert site.query("select count(*) from gold.gold_points_monthly_restatements") == [(0,)]

    # December's transaction corrected (a closed month restated), January gains a spend
    second = capture_and_build(
        site, folder, {"t1": (december, 30), "t2": (january, 5), "t3": ("2025-01-09 09:00:00.000", -2)}
    )
    restated = site.query(
        "select month_start_date, previous_transactions, transactions, transactions_change, previous_points_net, "
        "points_net, points_net_change, points_spent_change from gold.gold_points_monthly_restatements order by 1"
    )
    assert [(str(r[0]), *r[1:]) for r in restated] == [
        ("2024-12-01", 1, 1, 0, 10, 30, 20, 0),
        ("2025-01-01", 1, 2, 1, 5, 3, -2, 2),
    ]
    # the open version of each month is the report as published now, and each month's versions are its builds
    open_versions = site.query(
        "select month_start_date, transactions, points_earned, points_spent, points_net "
        "from snapshots.gold_points_monthly_report_snapshot where dbt_valid_to is null order by 1"
    )
    assert open_versions == second
    (times,) = site.query(
        "select count(distinct published_at), min(published_at > previous_published_at) "
        "from gold.gold_points_monthly_restatements"
    )
    assert times == (1, True)  # one build restated both months

    # a capture that changes nothing: the build publishes no new version
    versions = site.query("select count(*) from snapshots.gold_points_monthly_report_snapshot")
    assert versions == [(4,)]
    third = capture_and_build(
        site, folder, {"t1": (december, 30), "t2": (january, 5), "t3": ("2025-01-09 09:00:00.000", -2)}
    )
    assert third == second
    assert site.query("select count(*) from snapshots.gold_points_monthly_report_snapshot") == versions
    assert len(site.query("select * from gold.gold_points_monthly_restatements")) == 2

    # December's only transaction deleted: the month leaves the report and its last version is closed
    fourth = capture_and_build(site, folder, {"t2": (january, 5), "t3": ("2025-01-09 09:00:00.000", -2)})
    assert [str(row[0]) for row in fourth] == ["2025-01-01"]
    december_versions = site.query(
        "select points_net, dbt_valid_to is null from snapshots.gold_points_monthly_report_snapshot "
        "where month_start_date = date '2024-12-01' order by dbt_valid_from"
    )
    assert december_versions == [(10, False), (30, False)]
