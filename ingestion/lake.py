"""The lake: a local folder or an S3 prefix behind one small interface.

Publishing is write-once and atomic: a reader sees a whole file or none, and an existing key is never replaced.
Locally a file is written under the lake's scratch folder and hard-linked into place (the link fails if the
name exists); on S3 it is a single PUT with `If-None-Match: *`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ingestion.errors import LakeError

log = logging.getLogger(__name__)

STATE_PREFIX = "_ingestion"
SCRATCH_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


class Lake(ABC):
    """Keys are '/'-separated paths relative to the lake root."""

    uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def publish(self, local_file: Path, key: str) -> bool:
        """Write-once upload. False when the key already holds the same bytes; LakeError if other bytes."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or replace a small object (state documents)."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create a small object only if absent; False when it exists (used for the lock)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; a missing object is not an error."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy an object to a local file."""

    def exists(self, key: str) -> bool:
        return bool([o for o in self.list(key) if o.key == key])

    def clear_scratch(self) -> None:  # noqa: B027 - S3 has no scratch files: a PUT is whole or absent
        """Remove half-written files a crashed writer left (called while holding the lake's lock)."""

    def uri_for(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalLake(Lake):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._scratch = self.root / STATE_PREFIX / "tmp"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise LakeError(f"key {key!r} escapes the lake root")
        return path

    def _write_temp(self, writer: Any) -> Path:
        self._scratch.mkdir(parents=True, exist_ok=True)
        temp = self._scratch / f"{uuid.uuid4().hex}.partial"
        with temp.open("wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        return temp

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[ObjectInfo]:
        # S3 semantics: every key that starts with `prefix`, whether or not the prefix ends at a '/'
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and path.is_file():
                stat = path.stat()
                found.append(ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def clear_scratch(self) -> None:
        # Only old files: a run waiting for the lock writes its lock candidate here too, seconds before it tries.
        if self._scratch.is_dir():
            cutoff = time.time() - SCRATCH_MAX_AGE_SECONDS
            for leftover in self._scratch.glob("*.partial"):
                with contextlib.suppress(FileNotFoundError):
                    if leftover.stat().st_mtime < cutoff:
                        leftover.unlink()

    def publish(self, local_file: Path, key: str) -> bool:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)

        def copy(handle: IO[bytes]) -> None:
            with local_file.open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)

        temp = self._write_temp(copy)
        try:
            os.link(temp, final)
        except FileExistsError:
            if _md5(final) == _md5(local_file):
                return False
            raise LakeError(f"{self.uri_for(key)} already exists with other content; refusing to overwrite") from None
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = self._write_temp(lambda handle: handle.write(data))
        os.replace(temp, final)
        _fsync_dir(final.parent)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = self._write_temp(lambda handle: handle.write(data))
        try:
            os.link(temp, final)
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)
        return True

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download(self, key: str, dest: Path) -> Path:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError as exc:
            raise LakeError(f"{self.uri_for(key)} is missing") from exc
        return dest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Lake(Lake):
    """An S3 prefix. Credentials and endpoint come from boto3's standard chain (env AWS_ENDPOINT_URL included).

    Transient errors (5xx, throttling, connection resets) are retried by botocore's `standard` retry mode with
    exponential backoff; `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE` override it as usual.
    """

    def __init__(self, uri: str) -> None:
        import boto3
        from botocore.config import Config

        rest = uri.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise LakeError(f"lake {uri!r}: no bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        retry_mode = os.environ.get("AWS_RETRY_MODE", "standard")
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise LakeError(f"AWS_RETRY_MODE={retry_mode!r}: use standard, adaptive or legacy")
        config = Config(
            retries={"mode": retry_mode, "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "8"))},  # type: ignore[arg-type]
            connect_timeout=5,
            read_timeout=120,
            s3={"addressing_style": "path"},
        )
        session = boto3.session.Session()
        self.client = session.client("s3", config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise LakeError(f"S3 {action} {self.uri_for(key)} failed: {code}: {_safe(exc)}") from None
        except BotoCoreError as exc:
            raise LakeError(f"S3 {action} {self.uri_for(key)} failed: {_safe(exc)}") from None

    def read_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        with self._errors("read", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

    def list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][strip:], item["Size"], item["LastModified"]))
        return sorted(found, key=lambda o: o.key)

    def _head_etag(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return str(head["ETag"]).strip('"')

    def publish(self, local_file: Path, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("publish", key):
            try:
                with local_file.open("rb") as handle, _progress(local_file.stat().st_size, key) as bar:
                    body: Any = _ProgressReader(handle, bar) if bar is not None else handle
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
                # A retried PUT whose first attempt landed, or a rerun after a crash: same bytes is success.
                if self._head_etag(key) == _md5(local_file):
                    return False
                raise LakeError(
                    f"{self.uri_for(key)} already exists with other content; refusing to overwrite"
                ) from None
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("create", key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            except ClientError as exc:
                # 412 for an existing key; AWS answers 409 ConditionalRequestConflict to a concurrent writer
                if exc.response.get("Error", {}).get("Code") in (
                    "PreconditionFailed",
                    "412",
                    "ConditionalRequestConflict",
                ):
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def download(self, key: str, dest: Path) -> Path:
        with self._errors("download", key):
            size = int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
            with _progress(size, key) as bar:
                self.client.download_file(
                    self.bucket, self._key(key), str(dest), Callback=bar.update if bar is not None else None
                )
        return dest


PROGRESS_MIN_BYTES = 32 << 20


@contextlib.contextmanager
def _progress(size: int, key: str) -> Iterator[Any]:
    """A byte progress bar on a terminal for transfers large enough to wait for; None otherwise."""
    if size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=size, unit="B", unit_scale=True, desc=key.rsplit("/", 1)[-1], leave=False) as bar:
        yield bar


class _ProgressReader:
    """A file wrapper that reports bytes read, rewinding the bar when botocore seeks back to retry."""

    def __init__(self, handle: IO[bytes], bar: Any) -> None:
        self._handle = handle
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._bar.update(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        self._bar.n = position
        self._bar.refresh()
        return position

    def tell(self) -> int:
        return self._handle.tell()


def _safe(exc: BaseException) -> str:
    """An error text without credentials (botocore messages can echo signed headers in debug modes)."""
    text = str(exc)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def open_lake(uri: str) -> Lake:
    if uri.startswith("s3://"):
        return S3Lake(uri)
    if "://" in uri:
        raise LakeError(f"lake {uri!r}: only local paths and s3:// URIs are supported")
    return LocalLake(Path(uri))
