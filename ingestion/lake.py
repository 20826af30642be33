"""The lake: a local folder or an S3 prefix behind one small interface.

Publishing is write-once and atomic: a reader sees a whole file or none, and an existing key is never replaced.
Locally a file is written under the lake's scratch folder and hard-linked into place (the link fails if the
name exists); on S3 it is a single PUT with `If-None-Match: *`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ingestion.config import S3Settings, redact
from ingestion.errors import (
    ConditionalWritesError,
    LakeError,
    LakeFileSystemError,
    LakeKeyError,
    LakeLocationError,
    LakeObjectError,
    LakeUriError,
    OptionError,
    OverwriteRefusedError,
    ProbeRefusedError,
    S3RequestError,
    S3UriError,
)

log = logging.getLogger(__name__)

STATE_PREFIX = "_ingestion"
# what S3 answers a conditional write whose condition does not hold (AWS: 409 to a concurrent writer)
_CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict")
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
    def publish(self, local_file: Path, key: str, *, handover: bool = False) -> bool:
        """Write-once upload. False when the key already holds the same bytes; LakeError if other bytes.

        `handover`: the caller never writes to `local_file` again (the capture's own work files), so a local lake
        may link it in place of a copy; otherwise the published object is a copy, whatever happens to the file.
        """

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
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object's content and a version token for `replace_if`/`delete_if`; None when absent."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        """Replace the object only if it still is at `version` (compare-and-swap); False otherwise."""

    @abstractmethod
    def delete_if(self, key: str, version: str) -> bool:
        """Delete the object only if it still is at `version`; False otherwise."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy an object to a local file."""

    def exists(self, key: str) -> bool:
        return bool([o for o in self.list(key) if o.key == key])

    def clear_scratch(self) -> None:  # noqa: B027 - S3 has no scratch files: a PUT is whole or absent
        """Remove half-written files a crashed writer left (called while holding the lake's lock)."""

    def verify_conditional_writes(self) -> None:  # noqa: B027 - a local folder's hard links are always exclusive
        """Raise unless the store refuses a conditional write whose condition fails (checked before trusting it)."""

    def local_path(self, key: str) -> Path | None:
        """The object as a local file to read in place, when the lake is a folder; None on S3."""
        return None

    def duckdb_filesystem(self) -> Any | None:
        """An fsspec filesystem through which DuckDB reads the lake's objects in place (`stream_uri`), or None
        when it reads them as local files."""
        return None

    def stream_uri(self, key: str) -> str | None:
        """The object's URI for DuckDB through `duckdb_filesystem()`; None when it is to be read locally."""
        return None

    def uri_for(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def os_error_text(exc: OSError) -> str:
    """`No space left on device (ENOSPC)`: the words a user searches for, and the code a script checks."""
    code = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror or exc}" + (f" ({code})" if code else "")


class LocalLake(Lake):
    """A folder. Every filesystem failure (read-only, full, no permission, a file where a folder belongs) is a
    LakeError naming the path, never a traceback."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)
        self._scratch = self.root / STATE_PREFIX / "tmp"
        with self._os_errors("create the lake folder", self.root):
            if self.root.exists() and not self.root.is_dir():
                raise LakeLocationError(self.uri, "is a file, not a folder")
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                raise LakeLocationError(self.uri, "does not exist (a mistyped --lake, or a lake never captured)")

    @contextlib.contextmanager
    def _os_errors(self, action: str, path: Path) -> Iterator[None]:
        try:
            yield
        except LakeError:
            raise
        except OSError as exc:
            raise LakeFileSystemError(self.uri, action, str(exc.filename or path), os_error_text(exc)) from exc

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise LakeKeyError(key)
        return path

    def _write_temp(self, writer: Any) -> Path:
        self._scratch.mkdir(parents=True, exist_ok=True)
        temp = self._scratch / f"{uuid.uuid4().hex}.partial"
        try:
            with temp.open("wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            temp.unlink(missing_ok=True)  # a full disk must not keep the half-written file too
            raise
        return temp

    def _link_temp(self, local_file: Path) -> Path | None:
        """The file hard-linked into the scratch folder and made durable, when it is on the lake's filesystem:
        a snapshot of gigabytes is published without a copy. None when it is not (another device, no links)."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        temp = self._scratch / f"{uuid.uuid4().hex}.partial"
        try:
            os.link(local_file, temp)
        except OSError:
            return None
        try:
            with temp.open("rb") as handle:
                os.fsync(handle.fileno())
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        return temp

    def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        with self._os_errors("read", path):
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None
            except IsADirectoryError:
                raise LakeObjectError(self.uri_for(key), "is a folder where ingestion keeps a file") from None

    def list(self, prefix: str) -> list[ObjectInfo]:
        # S3 semantics: every key that starts with `prefix`, whether or not the prefix ends at a '/'
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        found = []
        with self._os_errors("list", base):
            if not base.is_dir():
                return []
            for path in base.rglob("*"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and path.is_file():
                    stat = path.stat()
                    found.append(ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def clear_scratch(self) -> None:
        # Only old files: a run waiting for the lock writes its lock candidate here too, seconds before it tries.
        with self._os_errors("clean", self._scratch):
            if self._scratch.is_dir():
                cutoff = time.time() - SCRATCH_MAX_AGE_SECONDS
                for leftover in self._scratch.glob("*.partial"):
                    with contextlib.suppress(FileNotFoundError):
                        if leftover.stat().st_mtime < cutoff:
                            leftover.unlink()

    def publish(self, local_file: Path, key: str, *, handover: bool = False) -> bool:
        final = self._path(key)

        def copy(handle: IO[bytes]) -> None:
            with local_file.open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)

        with self._os_errors("publish", final):
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = (self._link_temp(local_file) if handover else None) or self._write_temp(copy)
            try:
                os.link(temp, final)
            except FileExistsError:
                if _md5(final) == _md5(local_file):
                    return False
                raise OverwriteRefusedError(self.uri_for(key)) from None
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        with self._os_errors("write", final):
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = self._write_temp(lambda handle: handle.write(data))
            try:
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(final.parent)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        with self._os_errors("create", final):
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = self._write_temp(lambda handle: handle.write(data))
            try:
                os.link(temp, final)
            except FileExistsError:
                return False
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        return True

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._os_errors("delete", path):
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """A short critical section over the lake's small documents: an OS file lock, released by the kernel
        when its process dies, so no crash can leave it held."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        # the state folder itself is the lock (flock works on a directory): no mutex file is left in the lake
        fd = os.open(self._scratch.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        data = self.read_bytes(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        path = self._path(key)
        with self._os_errors("replace", path), self._exclusive():
            current = self.read_versioned(key)
            if current is None or current[1] != version:
                return False
            self.put_bytes(key, data)
        return True

    def delete_if(self, key: str, version: str) -> bool:
        path = self._path(key)
        with self._os_errors("delete", path), self._exclusive():
            current = self.read_versioned(key)
            if current is None or current[1] != version:
                return False
            path.unlink(missing_ok=True)
        return True

    def download(self, key: str, dest: Path) -> Path:
        path = self._path(key)
        with self._os_errors("copy", path):
            try:
                shutil.copyfile(path, dest)
            except FileNotFoundError as exc:
                if exc.filename == str(path) or not path.exists():
                    raise LakeObjectError(self.uri_for(key), "is missing") from exc
                raise
        return dest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Lake(Lake):
    """An S3 prefix. Credentials and endpoint come from boto3's standard chain (env AWS_ENDPOINT_URL included).

    Transient errors (5xx, throttling, connection resets, timeouts) are retried by botocore's `standard` retry mode
    with exponential backoff, each retry logged; `settings` (env AWS_MAX_ATTEMPTS, AWS_RETRY_MODE,
    LAGO_S3_CONNECT_TIMEOUT, LAGO_S3_READ_TIMEOUT, read by `ingestion.config`) override it.
    """

    def __init__(self, uri: str, settings: S3Settings | None = None) -> None:
        import boto3
        from botocore.config import Config

        rest = uri.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise S3UriError(uri)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        # a lake opened by a library caller reads the environment now; a command passes its configuration
        self.settings = settings if settings is not None else S3Settings.from_env()
        self.max_attempts = self.settings.max_attempts
        config = Config(
            retries={"mode": self.settings.retry_mode, "max_attempts": self.max_attempts},
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            s3={"addressing_style": "path"},
        )
        session = boto3.session.Session()
        self.client = session.client("s3", config=config)
        # botocore retries silently; a run waiting on a failing endpoint says so, attempt by attempt
        self.client.meta.events.register_last("needs-retry.s3", self._log_retry)

    def _log_retry(
        self, attempts: int, caught_exception: Exception | None = None, response: Any = None, **kwargs: Any
    ) -> None:
        if attempts >= self.max_attempts:
            return
        if caught_exception is not None:
            problem = _safe(caught_exception)
        else:
            status = response[0].status_code if response is not None else 0
            if status < 500 and status != 429:
                return
            problem = f"HTTP {status} {(response[1] or {}).get('Error', {}).get('Code', '')}".strip()
        operation = getattr(kwargs.get("operation"), "name", "request")
        log.warning(
            "S3 %s on %s: attempt %d of %d failed (%s); retrying",
            operation,
            self.client.meta.endpoint_url,
            attempts,
            self.max_attempts,
            problem,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def duckdb_filesystem(self) -> Any | None:
        """s3fs on the same endpoint, credentials, timeouts and retries as this lake's boto3 client (DuckDB's own
        httpfs extension is not installable offline); None when s3fs is not installed (objects are downloaded).
        It keeps the S3 failure behind a read DuckDB reports as failed (see `lake_read_failure`)."""
        try:
            import s3fs  # noqa: F401 - only whether it is installed
        except ImportError:
            return None
        config = {
            "connect_timeout": self.settings.connect_timeout,
            "read_timeout": self.settings.read_timeout,
            "retries": {"mode": "standard", "max_attempts": self.max_attempts},
            "s3": {"addressing_style": "path"},
        }
        return _s3_reads_class()(
            client_kwargs={"endpoint_url": self.client.meta.endpoint_url, "region_name": self.client.meta.region_name},
            config_kwargs=config,
            skip_instance_cache=True,
            # DuckDB asks for the column chunks it needs: each read goes to S3 as asked, no read-ahead cache
            default_cache_type="none",
        )

    def stream_uri(self, key: str) -> str | None:
        return f"s3://{self.bucket}/{self._key(key)}"

    def verify_conditional_writes(self) -> None:
        """Write a probe object twice with `If-None-Match: *` and once with a wrong `If-Match`: a server that
        accepts either would void the lock and write-once publishing without a sign, so it is refused."""
        token = uuid.uuid4().hex
        probe = f"{STATE_PREFIX}/probe/{token}.json"
        endpoint = self.client.meta.endpoint_url
        mine = json.dumps({"probe": token}).encode()
        # a refusal of the first create is our own retried PUT whose first answer was lost, if it holds our bytes
        if not self.create_exclusive(probe, mine) and self.read_bytes(probe) != mine:
            raise ProbeRefusedError(endpoint, self.uri_for(probe))
        try:
            ignored = []
            if self.create_exclusive(probe, b'{"again": true}'):
                ignored.append("If-None-Match: * on an existing key")
            if self.replace_if(probe, b'{"replaced": true}', '"00000000000000000000000000000000"'):
                ignored.append("If-Match with a wrong ETag")
        finally:
            self.delete(probe)
        if ignored:
            raise ConditionalWritesError(endpoint, tuple(ignored), self.uri)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise S3RequestError(action, self.uri_for(key), code, _safe(exc)) from None
        except BotoCoreError as exc:
            raise S3RequestError(action, self.uri_for(key), None, _safe(exc)) from None

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

    def publish(self, local_file: Path, key: str, *, handover: bool = False) -> bool:
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
                raise OverwriteRefusedError(self.uri_for(key)) from None
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

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        with self._errors("read", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            body: bytes = response["Body"].read()
            return body, str(response["ETag"])

    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        return self._if_match(
            "replace",
            key,
            lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=version),
        )

    def delete_if(self, key: str, version: str) -> bool:
        return self._if_match(
            "delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=version)
        )

    def _if_match(self, action: str, key: str, request: Callable[[], object]) -> bool:
        """Send a request conditional on the object's ETag; False when the object changed or is gone."""
        from botocore.exceptions import ClientError

        with self._errors(action, key):
            try:
                request()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in (*_CONDITION_FAILED, "NoSuchKey", "404"):
                    return False
                raise
        return True

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


@functools.cache
def _s3_reads_class() -> type[Any]:
    """s3fs's filesystem, remembering the failure of its last failed S3 call as a LakeError.

    DuckDB reports an exception raised in a Python filesystem as its own error whose text is the start of a
    Python traceback, whatever the cause; every S3 call of s3fs goes through `_call_s3`, so the cause (the S3
    error code, the object) is taken there. A call that succeeds clears it: a failure s3fs itself handled (a
    probe answered 404) must not be taken later for the cause of an unrelated error."""
    import s3fs

    class S3Reads(s3fs.S3FileSystem):  # type: ignore[misc]
        lake_failure: LakeError | None = None

        async def _call_s3(self, method: str, *args: Any, **kwargs: Any) -> Any:
            try:
                result = await super()._call_s3(method, *args, **kwargs)
            except Exception as exc:
                self.lake_failure = _read_failure(method, kwargs, exc)
                raise
            self.lake_failure = None
            return result

    return S3Reads


def _read_failure(method: str, request: dict[str, Any], exc: Exception) -> LakeError:
    """A failed s3fs call as a LakeError naming the object and the S3 error code (s3fs turns botocore's errors into
    OSErrors that keep the original as their cause)."""
    from botocore.exceptions import BotoCoreError, ClientError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ClientError | BotoCoreError):
        cause = cause.__cause__ or cause.__context__
    bucket, key = request.get("Bucket"), request.get("Key")
    where = f"s3://{bucket}/{key}" if bucket and key else f"s3://{bucket}" if bucket else "the lake"
    action = method.replace("_", " ")
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code", "?")
        return S3RequestError(action, where, code, _safe(cause))
    return S3RequestError(action, where, None, f"{type(exc).__name__}: {_safe(cause or exc)}")


def lake_read_failure(filesystem: Any | None) -> LakeError | None:
    """The S3 failure behind a DuckDB read through `filesystem` (from `Lake.duckdb_filesystem`), if any."""
    failure = getattr(filesystem, "lake_failure", None)
    return failure if isinstance(failure, LakeError) else None


def _safe(exc: BaseException) -> str:
    """An error text without credentials (botocore messages can echo signed headers in debug modes)."""
    return redact(str(exc))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def open_lake(uri: str, *, create: bool = True, s3: S3Settings | None = None) -> Lake:
    """The lake at `uri`: `s3://bucket/prefix` (its clients set by `s3`) or a folder (created unless `create` is
    False)."""
    if not uri.strip():
        raise OptionError("--lake", "is empty: give a folder or s3://bucket/prefix")
    if uri.startswith("s3://"):
        return S3Lake(uri, s3)
    # `s3:/bucket`, `S3://...`, `gs://...`: a typo or another store, never a local folder named `s3:`
    if _SCHEME.match(uri) and not Path(uri).exists():
        raise LakeUriError(uri)
    return LocalLake(Path(uri), create=create)
