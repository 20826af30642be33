"""`python -m ingestion verify`: a capture's receipt, on a local and an S3 lake. A lake captured from a database is
equal to it, row for row; a published change file replaced behind the lake's back is found, and the keys it changed
are named (missing in the lake, different), with exit 1; a table never captured is all "missing in lake".
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pgserver import PostgresCluster, fresh_database, simulate_day
from support.cli import ingest, run_cli

POSTGRES = ("--source", "loyalty", "--from", "postgres")


@pytest.fixture(scope="module")
def database(postgres_server: PostgresCluster) -> str:
    dsn = fresh_database(postgres_server, "verify")
    for _ in range(2):  # day 1 holds inserts, updates and deletes of day 0's rows
        written = simulate_day(dsn, "--scale", "60")
        assert written.returncode == 0, written.stderr[-2000:]
    return dsn


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f'select count(*) from public."{table}"').fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(str(row[0]))


class LakeFiles:
    """Read and replace a lake's published files, a local folder or an S3 prefix, behind the lake's back."""

    def __init__(self, lake: str, client: Any = None) -> None:
        self.lake, self.client = lake, client

    def keys(self, prefix: str) -> list[str]:
        if not self.lake.startswith("s3://"):
            return sorted(str(p.relative_to(self.lake)) for p in Path(self.lake, prefix).rglob("*.parquet"))
        bucket, _, root = self.lake.removeprefix("s3://").partition("/")
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=f"{root}/{prefix}")
        return sorted(o["Key"].removeprefix(f"{root}/") for o in listed.get("Contents", []))

    def read(self, key: str) -> pa.Table:
        if not self.lake.startswith("s3://"):
            return pq.read_table(Path(self.lake, key))
        bucket, _, root = self.lake.removeprefix("s3://").partition("/")
        return pq.read_table(io.BytesIO(self.client.get_object(Bucket=bucket, Key=f"{root}/{key}")["Body"].read()))

    def replace(self, key: str, data: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(data, buffer)
        if not self.lake.startswith("s3://"):
            path = Path(self.lake, key)
            aside = path.with_suffix(".tmp")
            aside.write_bytes(buffer.getvalue())
            os.replace(aside, path)
            return
        bucket, _, root = self.lake.removeprefix("s3://").partition("/")
        self.client.put_object(Bucket=bucket, Key=f"{root}/{key}", Body=buffer.getvalue())


def test_verify_is_equal_then_names_the_keys_of_a_tampered_change_file(
    any_lake: str, database: str, request: pytest.FixtureRequest
) -> None:
    ingest(any_lake, *POSTGRES, "--dsn", database, check=True)
    equal = run_cli("verify", "loyalty.produtos", "loyalty.clientes", "--lake", any_lake, "--dsn", database)
    assert equal.returncode == 0, equal.stderr[-2000:]
    rows = {name: count(database, name) for name in ("produtos", "clientes")}
    for name, n in rows.items():
        assert re.search(
            rf"^loyalty\.{name}: equal, {n} rows \(digest [0-9a-f]{{32}}, 1 change file", equal.stdout, re.M
        )

    client = request.getfixturevalue("seaweedfs").client() if any_lake.startswith("s3://") else None
    files = LakeFiles(any_lake, client)
    (full_load,) = files.keys("raw/loyalty/full-load/produtos/")
    data = files.read(full_load).to_pylist()
    dropped, changed = data[0], data[1]
    changed["DescNomeProduto"] = f"{changed['DescNomeProduto']} (edited)"
    files.replace(full_load, pa.Table.from_pylist(data[1:], schema=files.read(full_load).schema))

    tampered = run_cli("verify", "loyalty.produtos", "loyalty.clientes", "--lake", any_lake, "--dsn", database)
    assert tampered.returncode == 1, tampered.stderr[-2000:]
    assert f"loyalty.produtos: differs: source {rows['produtos']} rows, lake {rows['produtos'] - 1} rows; " in (
        tampered.stdout
    )
    assert "1 missing in lake, 0 missing in source, 1 different" in tampered.stdout
    assert f"  missing in lake: IdProduto={dropped['IdProduto']}\n" in tampered.stdout
    assert f"  different: IdProduto={changed['IdProduto']}\n" in tampered.stdout
    assert f"loyalty.clientes: equal, {rows['clientes']} rows" in tampered.stdout  # the other table is still equal


def test_a_table_never_captured_is_missing_in_the_lake(database: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    ingest(lake, *POSTGRES, "--dsn", database, "--tables", "produtos", check=True)
    result = run_cli("verify", "loyalty.transacoes", "--lake", str(lake), "--dsn", database)
    n = count(database, "transacoes")
    assert result.returncode == 1
    assert f"loyalty.transacoes: differs: source {n} rows, lake 0 rows; {n} missing in lake" in result.stdout
    assert f"... and {n - 20} more missing in lake" in result.stdout


def test_verify_of_an_unknown_table_is_a_usage_error(database: str, tmp_path: Path) -> None:
    result = run_cli("verify", "loyalty.nope", "--lake", str(tmp_path / "lake"), "--dsn", database)
    assert result.returncode == 2 and "source loyalty has no table 'nope'" in result.stderr
    unnamed = run_cli("verify", "clientes", "--lake", str(tmp_path / "lake"), "--dsn", database)
    assert unnamed.returncode == 2 and "name the table as <source>.<table>" in unnamed.stderr


def test_verify_from_a_csv_folder(tmp_path: Path) -> None:
    """Any reader of snapshots can be verified against: here the CSV folder a lake was captured from, then edited."""
    folder, lake = tmp_path / "csv", tmp_path / "lake"
    folder.mkdir()
    header = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto\n"
    (folder / "produtos.csv").write_text(header + "1;Chapéu;;present\n2;Ponei;um ponei;ponei\n", encoding="utf-8")
    source = ("--from", "csv", "--path", str(folder))
    ingest(lake, "--source", "loyalty", *source, "--tables", "produtos", check=True)
    equal = run_cli("verify", "loyalty.produtos", "--lake", str(lake), *source)
    assert equal.returncode == 0 and "loyalty.produtos: equal, 2 rows" in equal.stdout, equal.stderr[-2000:]
    (folder / "produtos.csv").write_text(header + "1;Chapéu;;present\n2;Ponei;dois poneis;ponei\n", encoding="utf-8")
    edited = run_cli("verify", "loyalty.produtos", "--lake", str(lake), *source)
    assert edited.returncode == 1 and "  different: IdProduto=2\n" in edited.stdout, edited.stdout
