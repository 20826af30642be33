"""KaggleReader with the real `kaggle` client; only its one HTTP call is answered by `responses`.

With KAGGLE_USERNAME/KAGGLE_KEY set, `KaggleApi.authenticate()` makes no request, and
`dataset_download_files` makes exactly one: a POST to the API's DownloadDataset method, whose answer (on
kaggle.com a redirect to the zip) is the zip itself here.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import responses

from ingestion.catalog import Table, load_catalog
from ingestion.errors import (
    BadCsvError,
    CorruptDownloadError,
    DatasetNameError,
    KaggleCredentialsError,
    KaggleRefusedError,
    MissingTableFileError,
)
from ingestion.readers.base import CaptureContext
from ingestion.readers.kaggle import DEFAULT_DATASET, KaggleReader

DOWNLOAD_URL = "https://api.kaggle.com/v1/datasets.DatasetApiService/DownloadDataset"
USERNAME = "lago-tester"
KEY = "3f9c2e71a0b84d5e9c6b1a2f7e4d8c05"

# Small extracts shaped like the real dataset: ';'-separated, text timestamps with milliseconds, 0/1 flags,
# empty descriptions, negative points for spending.
CSV_FILES = {
    "clientes.csv": (
        "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao\n"
        "0a1b2c3d-0000-4000-8000-000000000001;1;1;0;0;0;1230;2024-02-01 10:12:03.456;2025-01-15 08:01:02.003\n"
        "0a1b2c3d-0000-4000-8000-000000000002;0;1;1;0;1;0;2024-03-10 21:00:00.000;2024-03-10 21:00:00.000\n"
    ),
    "produtos.csv": (
        "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto\n"
        "1;ChatMessage;Mensagem no chat;chat\n"
        "5;Presente;;present\n"
        "11;Churn_10pp;;churn_model\n"
    ),
    "transacoes.csv": (
        "IdTransacao;IdCliente;DtCriacao;QtdePontos;DescSistemaOrigem\n"
        "9f8e7d6c-0000-4000-8000-00000000000a;0a1b2c3d-0000-4000-8000-000000000001;"
        "2025-01-15 08:01:02.003;10;twitch\n"
        "9f8e7d6c-0000-4000-8000-00000000000b;0a1b2c3d-0000-4000-8000-000000000001;"
        "2025-01-16 19:45:10.250;-100;cursos\n"
    ),
    "transacao_produto.csv": (
        "idTransacaoProduto;IdTransacao;IdProduto;QtdeProduto;vlProduto\n"
        "5e4d3c2b-0000-4000-8000-000000000001;9f8e7d6c-0000-4000-8000-00000000000a;1;1;10\n"
        "5e4d3c2b-0000-4000-8000-000000000002;9f8e7d6c-0000-4000-8000-00000000000b;5;1;-100\n"
        # course products carry text ids in the real dataset: the line must still be captured
        "5e4d3c2b-0000-4000-8000-000000000003;9f8e7d6c-0000-4000-8000-00000000000b;carreira;1;0\n"
    ),
}


def dataset_zip(files: dict[str, str] | None = None, folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (CSV_FILES if files is None else files).items():
            archive.writestr(folder + name, text.encode("utf-8"))
    return buffer.getvalue()


@pytest.fixture
def loyalty_tables() -> list[Table]:
    return list(load_catalog().source("loyalty").tables.values())


@pytest.fixture
def kaggle_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[responses.RequestsMock]:
    """Credentials in the environment, nothing from the developer's own Kaggle setup, no real network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "KAGGLE_KERNEL_RUN_TYPE", "VERBOSE", "VERBOSE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        # Imported here, with the test environment and the mock in place: `import kaggle` authenticates.
        extended = importlib.import_module("kaggle.api.kaggle_api_extended")
        # The config file location is fixed when the module is first imported; keep it out of the real home.
        monkeypatch.setattr(extended.KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
        yield mock


def answer_download(mock: responses.RequestsMock, body: bytes) -> None:
    mock.add(
        responses.POST,
        DOWNLOAD_URL,
        body=body,
        status=200,
        content_type="application/zip",
        headers={"Last-Modified": "Mon, 24 Nov 2025 10:00:00 GMT"},
    )


def json_body(body: object) -> object:
    assert isinstance(body, bytes | str), body
    return json.loads(body)


def read_all(reader: KaggleReader, tables: list[Table], workdir: Path) -> dict[str, pa.Table]:
    context = CaptureContext(workdir=workdir)
    return {
        t.name: pq.read_table(reader.read(t, context).to_parquet(workdir / f"{t.name}.parquet", t))
        for t in reader.available_tables(tables)
    }


@pytest.mark.parametrize("folder", ["", "loyalty-system/"], ids=["flat", "sub-folder"])
def test_downloads_once_and_writes_typed_parquet(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], tmp_path: Path, folder: str
) -> None:
    answer_download(kaggle_env, dataset_zip(folder=folder))
    reader = KaggleReader()

    snapshots = read_all(reader, loyalty_tables, tmp_path)

    assert sorted(snapshots) == ["clientes", "produtos", "transacao_produto", "transacoes"]
    for table in loyalty_tables:
        written = snapshots[table.name].schema
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in table.schema], table.name

    clientes = snapshots["clientes"].to_pylist()
    assert clientes[0] == {
        "idCliente": "0a1b2c3d-0000-4000-8000-000000000001",
        "flEmail": 1,
        "flTwitch": 1,
        "flYouTube": 0,
        "flBlueSky": 0,
        "flInstagram": 0,
        "qtdePontos": 1230,
        "DtCriacao": "2024-02-01 10:12:03.456",
        "DtAtualizacao": "2025-01-15 08:01:02.003",
    }
    produtos = snapshots["produtos"].to_pydict()
    assert produtos["IdProduto"] == [1, 5, 11]
    assert produtos["DescDescricaoProduto"] == ["Mensagem no chat", None, None]
    assert snapshots["transacoes"].column("QtdePontos").to_pylist() == [10, -100]
    assert snapshots["transacao_produto"].column("vlProduto").to_pylist() == [10, -100, 0]
    assert snapshots["transacao_produto"].column("IdProduto").to_pylist() == ["1", "5", "carreira"]

    # One request for the whole dataset, to the dataset's download method, with the user's key.
    assert len(kaggle_env.calls) == 1
    request = kaggle_env.calls[0].request
    assert (request.method, request.url) == ("POST", DOWNLOAD_URL)
    owner, slug = DEFAULT_DATASET.split("/")
    assert json_body(request.body) == {"ownerSlug": owner, "datasetSlug": slug}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()


def test_another_dataset_is_requested_by_its_own_slugs(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], tmp_path: Path
) -> None:
    answer_download(kaggle_env, dataset_zip())

    KaggleReader("someone/loyalty-copy").available_tables(loyalty_tables)

    assert json_body(kaggle_env.calls[0].request.body) == {"ownerSlug": "someone", "datasetSlug": "loyalty-copy"}


def test_a_table_missing_from_the_dataset(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], tmp_path: Path
) -> None:
    files = {k: v for k, v in CSV_FILES.items() if k != "transacao_produto.csv"}
    answer_download(kaggle_env, dataset_zip(files))
    reader = KaggleReader()

    available = reader.available_tables(loyalty_tables)

    assert sorted(t.name for t in available) == ["clientes", "produtos", "transacoes"]
    missing = next(t for t in loyalty_tables if t.name == "transacao_produto")
    with pytest.raises(MissingTableFileError) as refused:
        reader.read(missing, CaptureContext(workdir=tmp_path))
    error = refused.value
    assert (error.table, error.dataset, error.file) == (
        "loyalty.transacao_produto",
        reader.dataset,
        "transacao_produto.csv",
    )
    assert error.found == ("clientes.csv", "produtos.csv", "transacoes.csv")
    assert len(kaggle_env.calls) == 1


def test_a_csv_that_breaks_the_declaration_is_reported_by_the_csv_checks(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], tmp_path: Path
) -> None:
    files = dict(CSV_FILES, **{"produtos.csv": CSV_FILES["produtos.csv"].replace(";", ",")})
    answer_download(kaggle_env, dataset_zip(files))
    produtos = next(t for t in loyalty_tables if t.name == "produtos")

    with pytest.raises(BadCsvError) as refused:
        KaggleReader().read(produtos, CaptureContext(workdir=tmp_path))
    error = refused.value
    assert (error.table, error.file, error.kind, error.line) == ("loyalty.produtos", "produtos.csv", "separator", 1)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (401, json.dumps({"code": 401, "message": f"Unauthenticated: key {KEY} is not valid"}), "application/json"),
        (403, "Forbidden", "text/plain"),
    ],
    ids=["401-json", "403-text"],
)
def test_refused_credentials_are_a_clear_source_access_error(
    kaggle_env: responses.RequestsMock,
    loyalty_tables: list[Table],
    status: int,
    body: str,
    content_type: str,
) -> None:
    kaggle_env.add(responses.POST, DOWNLOAD_URL, body=body, status=status, content_type=content_type)

    with pytest.raises(KaggleRefusedError) as caught:
        KaggleReader().available_tables(loyalty_tables)

    assert (caught.value.dataset, caught.value.status, caught.value.exit_code) == (DEFAULT_DATASET, status, 3)
    # what the user reads: how to give credentials, and never the key itself
    message = str(caught.value)
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in message
    assert KEY not in message
    assert KEY not in repr(caught.value.__cause__) and caught.value.__suppress_context__
    assert len(kaggle_env.calls) == 1


def test_an_unknown_dataset_is_a_source_access_error(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table]
) -> None:
    kaggle_env.add(responses.POST, DOWNLOAD_URL, json={"code": 404, "message": "Not found"}, status=404)

    with pytest.raises(KaggleRefusedError) as caught:
        KaggleReader("nobody/nothing").available_tables(loyalty_tables)
    assert (caught.value.dataset, caught.value.status) == ("nobody/nothing", 404)


def test_missing_credentials_say_how_to_provide_them(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")

    with pytest.raises(KaggleCredentialsError) as caught:
        KaggleReader().available_tables(loyalty_tables)
    assert caught.value.exit_code == 3 and "KAGGLE_USERNAME and KAGGLE_KEY" in caught.value.problem

    assert len(kaggle_env.calls) == 0


def test_a_corrupt_download_is_a_snapshot_error(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table]
) -> None:
    answer_download(kaggle_env, b"PK\x03\x04 this is not really a zip")

    with pytest.raises(CorruptDownloadError) as caught:
        KaggleReader().available_tables(loyalty_tables)
    assert (caught.value.dataset, caught.value.exit_code) == (DEFAULT_DATASET, 3)


def test_a_dataset_name_must_be_owner_slash_name() -> None:
    with pytest.raises(DatasetNameError) as caught:
        KaggleReader("teomewhy-loyalty-system")
    assert caught.value.dataset == "teomewhy-loyalty-system"


def test_empty_descriptions_are_null_and_a_quoted_empty_one_is_the_empty_text(
    kaggle_env: responses.RequestsMock, loyalty_tables: list[Table], tmp_path: Path
) -> None:
    """The dataset's empty descriptions are NULL (never a float NaN that differs from itself, which would make
    every such row an update); a quoted empty description is the empty text, so a change between them shows."""
    produtos = (
        "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto\n"
        '1;ChatMessage;"";chat\n'
        "5;Presente;;present\n"
    )
    answer_download(kaggle_env, dataset_zip({"produtos.csv": produtos}))
    snapshots = read_all(KaggleReader(), loyalty_tables, tmp_path)
    assert snapshots["produtos"].num_rows == 2
    assert snapshots["produtos"].column("DescDescricaoProduto").to_pylist() == ["", None]
