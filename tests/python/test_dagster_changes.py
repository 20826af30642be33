"""The job builds what its captures changed: a run whose captures published nothing starts no dbt build, a run
whose capture published changes builds their lineage (a real Dagster instance, real captures, real dbt builds)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.capture import CHANGED
from orchestration.lakehouse import JOB_NAME, build_definitions
from orchestration.settings import Settings

pytestmark = [pytest.mark.dbt, pytest.mark.slow]

HEADER = "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao\n"
CAPTURE = dg.AssetKey(["loyalty", "clientes"])


def export_clientes(folder: Path, customers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"c{n};1;0;1;0;0;{10 * n};2024-01-01 10:00:00.000;2024-02-01 10:00:00.000\n" for n in range(customers)
    )
    (folder / "clientes.csv").write_text(HEADER + rows, encoding="utf-8")


def materialised(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    """The run's materialisations by asset name (the last part of the key)."""
    found: dict[str, dg.AssetMaterialization] = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            found[materialization.asset_key.path[-1]] = materialization
    return found


@pytest.fixture
def defs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The project's definitions on a lake, a warehouse and a dbt target of the test's own, without retries."""
    for name, value in {
        "LAKE_URI": str(tmp_path / "lake"),
        "DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "LAGO_DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "LAGO_MAX_RETRIES": "0",
        "LAGO_LOCK_WAIT_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return build_definitions(Settings.from_env())


def test_a_run_whose_captures_changed_nothing_starts_no_build(tmp_path: Path, defs: dg.Definitions) -> None:
    job = defs.resolve_job_def(JOB_NAME)
    # clientes' capture, its Bronze and Silver models: a dbt build of two models and their tests per run
    graph = defs.resolve_asset_graph()
    below = dg.AssetSelection.assets(CAPTURE).downstream().resolve(graph)
    models = {"bronze_loyalty__clientes", "silver_loyalty__customers"}
    selection = sorted(key for key in below if key == CAPTURE or key.path[-1] in models)
    assert len(selection) == 3, selection
    export = tmp_path / "export"
    config = {"ops": {"capture_loyalty": {"config": {"reader": "csv", "path": str(export)}}}}

    runs = []
    with dg.DagsterInstance.ephemeral() as instance:
        for customers in (2, 2, 3):  # a full load; the same export again; one new customer
            export_clientes(export, customers)
            result = job.execute_in_process(instance=instance, run_config=config, asset_selection=selection)
            assert result.success
            runs.append(materialised(result))

    first, unchanged, changed = runs
    assert first["clientes"].metadata[CHANGED] == dg.MetadataValue.bool(True)
    assert set(first) == {"clientes", *models}, set(first)
    # the same export: the capture says it changed nothing, and no dbt asset was materialised
    assert unchanged["clientes"].metadata[CHANGED] == dg.MetadataValue.bool(False)
    assert set(unchanged) == {"clientes"}, set(unchanged)
    assert changed["clientes"].metadata[CHANGED] == dg.MetadataValue.bool(True)
    assert set(changed) == {"clientes", *models}, set(changed)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from silver.silver_loyalty__customers").fetchone() == (3,)


def export_produtos(folder: Path, products: int) -> None:
    header = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto\n"
    rows = "".join(f"{n};produto {n};;chat\n" for n in range(products))
    (folder / "produtos.csv").write_text(header + rows, encoding="utf-8")


def test_a_run_builds_only_the_lineage_of_the_captures_that_changed(tmp_path: Path, defs: dg.Definitions) -> None:
    job = defs.resolve_job_def(JOB_NAME)
    products = dg.AssetKey(["loyalty", "produtos"])
    graph = defs.resolve_asset_graph()
    below = dg.AssetSelection.assets(CAPTURE, products).downstream().resolve(graph)
    # Bronze and history only: a Silver subset would bring relationship tests whose other side is not built
    models = {"bronze_loyalty__clientes", "history_loyalty__clientes", "bronze_loyalty__produtos",
              "history_loyalty__produtos"}  # fmt: skip
    selection = sorted(key for key in below if key in (CAPTURE, products) or key.path[-1] in models)
    assert len(selection) == 6, selection
    export = tmp_path / "export"
    config = {"ops": {"capture_loyalty": {"config": {"reader": "csv", "path": str(export)}}}}

    runs = []
    with dg.DagsterInstance.ephemeral() as instance:
        for customers, count in ((2, 4), (3, 4), (3, 5)):  # both tables; customers only; products only
            export_clientes(export, customers)
            export_produtos(export, count)
            result = job.execute_in_process(instance=instance, run_config=config, asset_selection=selection)
            assert result.success
            runs.append(materialised(result))
            with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
                counts = [
                    con.execute(f"select count(*) from bronze.{t}").fetchone()
                    for t in ("bronze_loyalty__clientes", "bronze_loyalty__produtos")
                ]
            assert counts == [(customers,), (count,)], counts

    both, customers_only, products_only = runs
    assert set(both) == {"clientes", "produtos", *models}, set(both)
    assert set(customers_only) == {"clientes", "produtos", "bronze_loyalty__clientes", "history_loyalty__clientes"}
    assert customers_only["produtos"].metadata[CHANGED] == dg.MetadataValue.bool(False)
    assert set(products_only) == {"clientes", "produtos", "bronze_loyalty__produtos", "history_loyalty__produtos"}
