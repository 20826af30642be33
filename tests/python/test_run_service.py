"""The seam the CLI and Dagster share: the run service, the reader registry, the configuration read once, and the
choice of source a run is never left to guess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.cli import ingest, run_cli

from ingestion.catalog import Catalog, load_catalog
from ingestion.config import CHECKOUT, Config, S3Settings, dsn_passwords, redact
from ingestion.errors import (
    ConfigError,
    OptionError,
    ReaderError,
    SourceChoiceError,
    UndeclaredTablesError,
    UnknownReaderError,
)
from ingestion.postgres.connection import resolve_dsn
from ingestion.postgres.errors import NoDsnError
from ingestion.readers.csv import CsvFolderReader
from ingestion.readers.registry import READERS, ReaderKind, ReaderOptions, reader_kind, register
from ingestion.run import RunRequest, choose_sources, run
from ingestion.table_store import load_state
from orchestration.settings import Settings

SCALE = 100
CLIENTES = (
    "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao\n"
    "a;1;0;1;;0;10;2024-01-01 10:00:00.000;2024-02-01 10:00:00.000\n"
    "b;0;0;1;1;0;20;2024-01-01 10:00:00.000;2024-02-01 10:00:00.000\n"
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def export(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clientes.csv").write_text(CLIENTES, encoding="utf-8")
    return folder


# -- no silent default source -------------------------------------------------------------------------------------


def test_a_csv_run_without_source_exits_2_naming_the_declared_sources(tmp_path: Path, catalog: Catalog) -> None:
    lake = tmp_path / "lake"
    result = ingest(lake, "--from", "csv", "--path", str(export(tmp_path / "export")))
    assert result.returncode == 2, result.stderr
    assert "--source" in result.stderr and "Traceback" not in result.stderr
    assert f"declared: {', '.join(catalog.sources)}" in result.stderr, result.stderr
    assert not lake.exists(), "a refused run created the lake"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "loyalty", "--from", "csv"], "--from csv needs --path FOLDER"),
        (["--source", "hotmart", "--from", "kaggle"], "--from kaggle reads snapshots; an events source reads"),
        (["--source", "loyalty", "--arrival-column", "x"], "--arrival-column applies to events sources"),
        (["--source", "loyalty", "--mode", "log"], "--mode applies to database readers; --from simulator"),
    ],
    ids=["no-path", "snapshot-reader-for-events", "arrival-for-snapshots", "mode-for-files"],
)
def test_a_reader_the_run_cannot_build_leaves_no_lake(tmp_path: Path, args: list[str], message: str) -> None:
    lake = tmp_path / "lake"
    result = ingest(lake, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not lake.exists(), "a refused run created the lake"


def test_the_tables_of_one_source_settle_which_source_a_csv_run_captures(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    ingest(lake, "--from", "csv", "--path", str(export(tmp_path / "export")), "--tables", "clientes", check=True)
    files = sorted(p.name for p in (lake / "raw").rglob("*.parquet"))
    assert len(files) == 1 and files[0].startswith("clientes_"), files
    assert (lake / "raw" / "loyalty" / "full-load" / "clientes").is_dir()


def test_each_reader_reads_the_sources_of_its_capture_modes(catalog: Catalog) -> None:
    everything = tuple(catalog.sources.values())
    snapshot_sources = tuple(s for s in everything if s.capture == "snapshot")
    assert len(snapshot_sources) == 1, "kaggle's default source is the one snapshot source"
    # the simulator simulates every source; kaggle reads snapshots only
    assert choose_sources(catalog, "simulator") == everything
    assert choose_sources(catalog, "kaggle") == snapshot_sources
    # a database holds the tables of one source: without --source, the one snapshot source declared
    assert choose_sources(catalog, "postgres") == snapshot_sources
    # named tables settle the source when only one declares them
    assert choose_sources(catalog, "simulator", tables=("clientes",)) == (catalog.source("loyalty"),)
    assert choose_sources(catalog, "csv", tables=("product_item",)) == (catalog.source("hotmart"),)
    assert choose_sources(catalog, "csv", "hotmart") == (catalog.source("hotmart"),)


def test_postgres_without_source_needs_one_snapshot_source(tmp_path: Path) -> None:
    """A second declared snapshot source makes `--from postgres` without --source ambiguous: exit 2 naming both,
    before any connection is tried and before the lake is touched."""
    declaration = Path("models/bronze/loyalty/_loyalty__sources.yml")
    project = tmp_path / "project"
    for name in ("loyalty", "crm"):
        target = project / "models" / "bronze" / name / f"_{name}__sources.yml"
        target.parent.mkdir(parents=True)
        text = (CHECKOUT / declaration).read_text(encoding="utf-8")
        target.write_text(text.replace("  - name: loyalty\n", f"  - name: {name}\n", 1), encoding="utf-8")
    two = load_catalog(project=project)
    assert [(s.name, s.capture) for s in two.sources.values()] == [("crm", "snapshot"), ("loyalty", "snapshot")]
    with pytest.raises(SourceChoiceError) as caught:
        choose_sources(two, "postgres")
    assert caught.value.candidates == ("crm", "loyalty")
    lake = tmp_path / "lake"
    unreachable = "postgresql://nobody:hunter22@127.0.0.1:1/none"
    result = ingest(
        lake, "--from", "postgres", env={"LAGO_PROJECT_DIR": str(project), "LAGO_POSTGRES_DSN": unreachable}
    )
    assert result.returncode == 2, result.stderr
    assert "--from postgres reads sources crm and loyalty" in result.stderr and "--source" in result.stderr
    assert "hunter22" not in result.stderr and "Traceback" not in result.stderr
    assert not lake.exists(), "a refused run created the lake"


def test_an_ambiguous_source_is_a_usage_error_with_its_facts(catalog: Catalog) -> None:
    with pytest.raises(SourceChoiceError) as caught:
        choose_sources(catalog, "csv")
    assert caught.value.exit_code == 2
    assert caught.value.reader == "csv"
    assert caught.value.declared == tuple(catalog.sources)
    assert set(caught.value.candidates) == set(catalog.sources)
    with pytest.raises(UndeclaredTablesError) as undeclared:
        choose_sources(catalog, "simulator", tables=("nope",))
    assert (undeclared.value.tables, undeclared.value.reader) == (("nope",), "simulator")
    assert undeclared.value.declared == tuple(catalog.sources) and undeclared.value.exit_code == 2


# -- the reader registry ------------------------------------------------------------------------------------------


def test_the_cli_offers_the_registered_readers() -> None:
    assert list(READERS) == ["simulator", "kaggle", "csv", "postgres"]
    shown = run_cli("run", "--help", check=True).stdout
    for name, kind in READERS.items():
        assert name in shown and kind.summary.split()[0] in shown, shown
    refused = run_cli("run", "--from", "postgre", "--lake", "unused")
    assert refused.returncode == 2
    assert (
        "invalid choice: 'postgre'" in refused.stderr and "'simulator', 'kaggle', 'csv', 'postgres'" in refused.stderr
    )


def test_a_kind_builds_the_readers_of_the_capture_modes_it_serves() -> None:
    config = Config.from_env({})
    kaggle = reader_kind("kaggle")
    assert (kaggle.serves("snapshot"), kaggle.serves("events")) == (True, False)
    with pytest.raises(ReaderError) as refused:
        kaggle.event_reader(ReaderOptions(), config)
    assert (refused.value.reader, refused.value.wants) == ("kaggle", "events")
    with pytest.raises(ReaderError) as refused:
        reader_kind("csv").snapshot_reader(ReaderOptions(), config)
    assert (refused.value.reader, refused.value.wants, refused.value.exit_code) == ("csv", "--path", 2)
    with pytest.raises(UnknownReaderError) as unknown:
        reader_kind("nope")
    assert (unknown.value.reader, unknown.value.known) == ("nope", ("simulator", "kaggle", "csv", "postgres"))
    with pytest.raises(ValueError, match="registered twice"):
        register(READERS["csv"])


def test_a_registered_kind_is_captured_by_the_run_service(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One registration is all a new kind needs: the service builds its reader and captures with it."""
    folder = export(tmp_path / "export")
    kind = ReaderKind("folder", "a fixed folder", snapshots=lambda options, config: CsvFolderReader(folder))
    monkeypatch.setitem(READERS, kind.name, kind)
    loyalty = catalog.source("loyalty")
    request = RunRequest(str(tmp_path / "lake"), (loyalty,), reader="folder", tables=("clientes",))
    result = run(Config.from_env({}), catalog, request)
    (captured,) = result.sources
    record = captured.records["clientes"]
    assert record is not None and (record.kind, record.inserts, record.reader) == ("full-load", 2, "csv")
    assert result.day is None


# -- the run service ----------------------------------------------------------------------------------------------


def test_the_run_service_captures_every_source_on_one_simulated_day(tmp_path: Path, catalog: Catalog) -> None:
    lake = str(tmp_path / "lake")
    config = Config.from_env({})
    every = choose_sources(catalog, "simulator")
    options = ReaderOptions(scale=SCALE)
    for day in (0, 1):
        result = run(config, catalog, RunRequest(lake, every, reader_options=options))
        assert result.day == day
        assert [r.source.name for r in result.sources] == list(catalog.sources)
        for done in result.sources:
            assert list(done.records) == list(done.source.tables)
            for name, record in done.records.items():
                assert record is not None and record.day == day, name
                expected = ("full-load", "events") if day == 0 else ("cdc", "unchanged", "events", "no-events")
                assert record.kind in expected, (name, record.kind)
    loyalty, hotmart = catalog.source("loyalty"), catalog.source("hotmart")

    # loyalty alone moves a day ahead (the CLI's scope: the run's own tables)
    ahead = run(config, catalog, RunRequest(lake, (loyalty,), reader_options=options))
    assert ahead.day == 2
    # Dagster's scope is the whole catalogue: loyalty is at the day the catalogue is catching up to, so its step
    # captures nothing, and hotmart's step catches up to it
    steps = [
        run(config, catalog, RunRequest(lake, (source,), reader_options=options, day_scope="catalog"))
        for source in (loyalty, hotmart)
    ]
    assert [s.day for s in steps] == [2, 2]
    assert all(record is None for record in steps[0].sources[0].records.values())
    assert all(r is not None and r.day == 2 for r in steps[1].sources[0].records.values())
    states = [load_state(ahead.lake, t) for s in (loyalty, hotmart) for t in s.tables.values()]
    assert {state.last_capture.day if state.last_capture else None for state in states} == {2}


def test_tables_of_several_sources_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    request = RunRequest(str(tmp_path / "lake"), tuple(catalog.sources.values()), tables=("clientes",))
    with pytest.raises(OptionError) as refused:
        run(Config.from_env({}), catalog, request)
    assert (refused.value.option, refused.value.exit_code) == ("--tables", 2)
    assert not (tmp_path / "lake").exists()


# -- the configuration, read once ---------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_ones() -> None:
    config = Config.from_env({})
    assert config.project_dir == CHECKOUT
    assert config.lake_uri is None
    assert config.duckdb_memory_limit == "3GB"
    assert config.s3 == S3Settings("standard", 4, 5.0, 10.0)
    settings = Settings.from_config(config)
    assert settings.lake_uri == str(CHECKOUT / "lake")
    assert settings.duckdb_path == str(CHECKOUT / "warehouse" / "lago_mago.duckdb")
    assert (settings.cron, settings.max_retries, settings.retry_delay_seconds, settings.lock_wait_seconds) == (
        "0 */6 * * *",
        3,
        30.0,
        300.0,
    )


def test_variables_are_read_into_their_fields(tmp_path: Path) -> None:
    env = {
        "LAKE_URI": "s3://bucket/prefix",
        "LAGO_PROJECT_DIR": str(tmp_path),
        "LAGO_DUCKDB_MEMORY_LIMIT": "512MiB",
        "AWS_RETRY_MODE": "adaptive",
        "AWS_MAX_ATTEMPTS": "2",
        "LAGO_S3_CONNECT_TIMEOUT": "0.5",
        "LAGO_S3_READ_TIMEOUT": "7",
        "LAGO_MAX_RETRIES": "0",
        "LAGO_LOCK_WAIT_SECONDS": "0",
        "DUCKDB_PATH": "elsewhere.duckdb",
    }
    config = Config.from_env(env)
    assert (config.lake_uri, config.project_dir, config.duckdb_memory_limit) == (
        "s3://bucket/prefix",
        tmp_path.resolve(),
        "512MiB",
    )
    assert config.s3 == S3Settings("adaptive", 2, 0.5, 7.0)
    settings = Settings.from_config(config)
    assert (settings.lake_uri, settings.duckdb_path) == (
        "s3://bucket/prefix",
        str(tmp_path.resolve() / "elsewhere.duckdb"),
    )
    assert (settings.max_retries, settings.lock_wait_seconds) == (0, 0.0)


def test_the_postgres_connection_string_is_configuration_kept_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    """LAGO_POSTGRES_DSN is read with the rest, `--dsn` overrides it, and neither is in a repr or an error text."""
    dsn = "postgresql://capture:s3cr%40t-pw@db.internal:5433/loyalty?sslmode=disable"
    config = Config.from_env({"LAGO_POSTGRES_DSN": dsn})
    assert config.postgres_dsn == dsn and Config.from_env({}).postgres_dsn is None
    assert "s3cr" not in repr(config) and "s3cr" not in repr(ReaderOptions(dsn=dsn))
    assert resolve_dsn("host=elsewhere", config.postgres_dsn) == "host=elsewhere"
    assert resolve_dsn(None, config.postgres_dsn) == dsn
    with pytest.raises(NoDsnError) as missing:
        resolve_dsn(None, None)
    assert (missing.value.variable, missing.value.exit_code) == ("LAGO_POSTGRES_DSN", 2)
    assert dsn_passwords(dsn) == ("s3cr%40t-pw", "s3cr@t-pw")
    assert dsn_passwords(r"host=db password='a b\'c' user=u") == (r"'a b\'c'", "a b'c")
    monkeypatch.setenv("LAGO_POSTGRES_DSN", dsn)
    echoed = f"connection to {dsn} failed: password s3cr@t-pw rejected"
    assert redact(echoed) == "connection to *** failed: password *** rejected"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AWS_MAX_ATTEMPTS", "two", "is not a number"),
        ("LAGO_S3_READ_TIMEOUT", "-1", "must be positive and finite"),
        ("LAGO_S3_CONNECT_TIMEOUT", "inf", "must be positive and finite"),
        ("AWS_RETRY_MODE", "fast", "use standard, adaptive, legacy"),
        ("LAGO_DUCKDB_MEMORY_LIMIT", "lots", "give a positive size with a unit"),
        ("LAGO_LOCK_WAIT_SECONDS", "nan", "must be a finite number, 0 or more"),
    ],
)
def test_an_invalid_variable_is_one_clear_error_naming_it(
    tmp_path: Path, variable: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: value})
    assert (caught.value.variable, caught.value.value) == (variable, value)
    lake = tmp_path / "lake"
    result = ingest(lake, "--scale", str(SCALE), env={variable: value})
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"environment variable {variable}={value!r}: {problem}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not lake.exists(), "the run touched the lake before it read its configuration"


def test_the_project_directory_is_read_when_asked_not_at_import(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingestion.catalog` is imported by now; a variable set afterwards still counts."""
    project = tmp_path / "project"
    declaration = Path("models/bronze/loyalty/_loyalty__sources.yml")
    (project / declaration.parent).mkdir(parents=True)
    shutil.copy(CHECKOUT / declaration, project / declaration)
    monkeypatch.setenv("LAGO_PROJECT_DIR", str(project))
    assert list(load_catalog().sources) == ["loyalty"]
    assert len(catalog.sources) > 1
    # and the CLI reads it at its start: the simulator without --source now captures the copy's one source
    lake = tmp_path / "lake"
    ingest(lake, "--scale", str(SCALE), check=True)
    assert sorted(p.name for p in (lake / "raw").iterdir()) == ["loyalty"]
