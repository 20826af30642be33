"""The loyalty system's public Kaggle dataset, downloaded with the official `kaggle` client.

The whole dataset is one zip of `<table>.csv` files: it is downloaded once per reader and every table is then
read from the unzipped folder with the same CSV checks as a user's own folder (`readers/csv.py`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingestion.catalog import Table
from ingestion.config import redact
from ingestion.errors import (
    CorruptDownloadError,
    DatasetContentError,
    DatasetNameError,
    KaggleCredentialsError,
    KaggleDownloadError,
    KaggleRefusedError,
    MissingTableFileError,
)
from ingestion.readers.base import CaptureContext, Snapshot
from ingestion.readers.csv import csv_snapshot

log = logging.getLogger(__name__)

DEFAULT_DATASET = "teocalvo/teomewhy-loyalty-system"

CREDENTIALS_HELP = (
    "provide Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (from kaggle.com > Settings > API > "
    "Create New Token), or save that token file as ~/.kaggle/kaggle.json (or in $KAGGLE_CONFIG_DIR), "
    "or set KAGGLE_API_TOKEN"
)

# Environment variables whose values must never reach an error message.


class KaggleReader:
    """Reads each table from `<table>.csv` of a Kaggle dataset (found in any sub-folder of the zip)."""

    name = "kaggle"
    simulated_days = False

    def __init__(self, dataset: str = DEFAULT_DATASET) -> None:
        if dataset.count("/") != 1 or not all(dataset.split("/")):
            raise DatasetNameError(dataset)
        self.dataset = dataset
        self._download_dir: tempfile.TemporaryDirectory[str] | None = None
        self._csv_files: dict[str, Path] | None = None

    def available_tables(self, tables: list[Table]) -> list[Table]:
        files = self._download()
        return [t for t in tables if f"{t.name}.csv".lower() in files]

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        files = self._download()
        csv_path = files.get(f"{table.name}.csv".lower())
        if csv_path is None:
            found = tuple(sorted(p.name for p in files.values()))
            raise MissingTableFileError(table.qualified_name, self.dataset, f"{table.name}.csv", found)
        return csv_snapshot(table, csv_path, context.workdir / f"{table.name}.parquet", context.duckdb_memory_limit)

    def close(self) -> None:
        """Remove the downloaded files (also done when the reader is garbage-collected)."""
        if self._download_dir is not None:
            self._download_dir.cleanup()
        self._download_dir = None
        self._csv_files = None

    def _download(self) -> dict[str, Path]:
        """Download and unzip the dataset on first use; the CSV files by lower-cased file name."""
        if self._csv_files is not None:
            return self._csv_files
        api = _authenticated_api()
        self._download_dir = tempfile.TemporaryDirectory(prefix="lago-kaggle-")
        folder = Path(self._download_dir.name)
        log.info("downloading Kaggle dataset %s", self.dataset)
        try:
            with _download_errors(self.dataset):
                api.dataset_download_files(self.dataset, path=str(folder), unzip=True, quiet=False)
            self._csv_files = _csv_files(folder, self.dataset)
        except BaseException:
            self.close()
            raise
        log.info("Kaggle dataset %s: %s", self.dataset, ", ".join(sorted(self._csv_files)) or "no CSV files")
        return self._csv_files


def _authenticated_api() -> Any:
    # `import kaggle` authenticates at import time and prints a help text when it cannot; the explicit
    # authentication below is the one whose failure is reported.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.authenticate()
    except SystemExit:
        # The client ends the process (exit(1)) when it finds no credentials at all.
        raise KaggleCredentialsError(f"no Kaggle credentials found; {CREDENTIALS_HELP}") from None
    except OSError as exc:  # requests' errors, when validating an access token
        raise KaggleCredentialsError(f"Kaggle authentication failed: {redact(str(exc))}; {CREDENTIALS_HELP}") from None
    return api


@contextlib.contextmanager
def _download_errors(dataset: str) -> Iterator[None]:
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise KaggleRefusedError(
                dataset,
                status,
                f"Kaggle refused the credentials (HTTP {status}); check that the token is current and that your "
                f"account accepted the dataset's rules on its Kaggle page. To {CREDENTIALS_HELP}",
            ) from None
        if status == 404:
            raise KaggleRefusedError(dataset, status, "no such dataset on Kaggle (HTTP 404)") from None
        raise KaggleDownloadError(dataset, f"HTTP {status}: {redact(str(exc))}", status) from None
    except requests.RequestException as exc:
        raise KaggleDownloadError(dataset, f"{type(exc).__name__}: {redact(str(exc))}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        # A corrupt zip (ValueError/RuntimeError from the client's unzip step) or a full disk.
        raise CorruptDownloadError(dataset, redact(str(exc))) from None


def _csv_files(folder: Path, dataset: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*"), key=lambda p: (len(p.parts), str(p))):
        if not path.is_file() or path.suffix.lower() != ".csv":
            continue
        name = path.name.lower()
        if name in files:
            raise DatasetContentError(
                dataset,
                f"holds {path.name} twice ({files[name].relative_to(folder)} and {path.relative_to(folder)}); "
                "cannot tell which is the table",
            )
        files[name] = path
    return files
