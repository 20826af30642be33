"""One writer per lake: a lease in `_ingestion/lock.json` that its holder renews while it runs.

The lock is created only if absent (hard link locally, `If-None-Match: *` on S3). Its holder renews the lease
every `lease_seconds / 4` from a heartbeat thread, each renewal a conditional write on the version it last
wrote. A lease that has expired (its holder died anywhere: another host, a lost container, a job-cluster retry),
or whose holder is a dead process on this host, is taken over by a conditional replace of exactly the version
that was judged stale: two runs taking over at once cannot both win, and a holder that renews late loses
nothing it still holds. A holder whose renewal fails has lost the lock; `check()` then stops the run before its
next write.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from ingestion.errors import LakeError, LakeLockedError
from ingestion.lake import STATE_PREFIX, Lake

log = logging.getLogger(__name__)

LOCK_KEY = f"{STATE_PREFIX}/lock.json"
DEFAULT_LEASE_SECONDS = 120.0
# a lock written by a version without leases: its `acquired_at` plus this is its expiry
LEGACY_STALE_AFTER = timedelta(hours=6)


@dataclass(frozen=True)
class Holder:
    """What a lock document says, or why it says nothing usable."""

    run_id: str | None
    pid: object
    host: object
    acquired_at: str
    expires_at: datetime | None  # None: the document is not a valid lease
    problem: str | None = None

    @classmethod
    def parse(cls, raw: bytes) -> Holder:
        try:
            body = json.loads(raw)
        except ValueError:
            return cls(None, "?", "?", "?", None, "not JSON")
        if not isinstance(body, dict):
            return cls(None, "?", "?", "?", None, f"a JSON {type(body).__name__}, not an object")
        run_id = body.get("run_id")
        pid, host, acquired = body.get("pid", "?"), body.get("host", "?"), str(body.get("acquired_at", "?"))
        stamp = body.get("expires_at")
        try:
            if stamp is None:
                expires = datetime.fromisoformat(acquired) + LEGACY_STALE_AFTER
            else:
                expires = datetime.fromisoformat(str(stamp))
        except ValueError:
            return cls(None, pid, host, acquired, None, f"expiry {stamp or acquired!r} is not a time")
        if expires.tzinfo is None:
            return cls(None, pid, host, acquired, None, f"expiry {expires.isoformat()} has no time zone")
        return cls(str(run_id) if run_id is not None else None, pid, host, acquired, expires)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.acquired_at}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LakeLock:
    """Hold the lake's lock for the duration of a `with` block; waits up to `wait` seconds for another holder."""

    lake: Lake
    wait: float = 0.0
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _version: str | None = field(default=None, init=False)
    _acquired_at: str = field(default="", init=False)
    _lost: str | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _heartbeat: threading.Thread | None = field(default=None, init=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.wait) or self.wait < 0:
            raise LakeError(f"lock wait {self.wait!r} must be a finite number of seconds, 0 or more")

    def _document(self) -> bytes:
        now = self.now()
        body: dict[str, Any] = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "acquired_at": self._acquired_at or now.isoformat(),
            "renewed_at": now.isoformat(),
            "expires_at": (now + timedelta(seconds=self.lease_seconds)).isoformat(),
            "lease_seconds": self.lease_seconds,
        }
        return json.dumps(body).encode()

    def __enter__(self) -> LakeLock:
        self._acquire()
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._renew_loop, name="lake-lock-heartbeat", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            if self._version is not None and self._lost is None:
                self.lake.delete_if(LOCK_KEY, self._version)
        except LakeError as release_error:
            if exc_type is None:
                raise
            # the run already failed (often for the same reason, e.g. S3 went away): report that failure, not this
            log.warning(
                "could not release the lock of %s (%s); its lease expires by itself", self.lake.uri, release_error
            )
        finally:
            self._version = None

    def check(self) -> None:
        """Raise if the lease was lost (a renewal failed and another run may have taken over)."""
        if self._lost is not None:
            raise LakeLockedError(
                f"lake {self.lake.uri}: this run lost its lock ({self._lost}); nothing more is written"
            )

    # -- acquiring ----------------------------------------------------------------------------------------------

    def _acquire(self) -> None:
        self._acquired_at = self.now().isoformat()
        deadline = self.now() + timedelta(seconds=self.wait)
        while True:
            mine = self._document()
            if self.lake.create_exclusive(LOCK_KEY, mine):
                found = self.lake.read_versioned(LOCK_KEY)
                if found is None or Holder.parse(found[0]).run_id != self.run_id:
                    continue  # released and taken by another between our create and our read
                self._version = found[1]
                return
            found = self.lake.read_versioned(LOCK_KEY)
            if found is None:
                continue  # released between our attempt and our read: try again at once
            raw, version = found
            holder = Holder.parse(raw)
            if holder.run_id == self.run_id:
                self._version = version  # our own create landed, but its answer was lost and the retry refused
                return
            stale = self._stale_reason(holder)
            if stale is not None:
                log.warning("taking over stale lock of %s: %s (%s)", self.lake.uri, stale, holder.describe())
                if self.lake.replace_if(LOCK_KEY, mine, version):
                    found = self.lake.read_versioned(LOCK_KEY)
                    if found is not None and Holder.parse(found[0]).run_id == self.run_id:
                        self._version = found[1]
                        return
                continue  # another run took it over first, or the holder renewed: judge again
            if self.now() >= deadline:
                raise LakeLockedError(
                    f"lake {self.lake.uri} is locked by another ingestion run ({holder.describe()}, lease until "
                    f"{holder.expires_at.isoformat() if holder.expires_at else '?'}); wait for it to finish or pass "
                    f"--wait SECONDS; a dead holder's lease expires within {self.lease_seconds:.0f} s and is then "
                    "taken over"
                )
            left = (deadline - self.now()).total_seconds()
            self._stop.wait(min(1.0, max(0.05, left)))

    def _stale_reason(self, holder: Holder) -> str | None:
        if holder.expires_at is None:
            return f"its lock document is unusable ({holder.problem})"
        if self.now() > holder.expires_at:
            return f"its lease expired at {holder.expires_at.isoformat()}"
        if holder.host == socket.gethostname() and isinstance(holder.pid, int) and not _process_alive(holder.pid):
            return "its process is gone"
        return None

    # -- renewing -----------------------------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = self.lease_seconds / 4
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LakeError as error:  # a passing S3 outage: the lease still runs; try again next beat
                log.warning("could not renew the lock of %s: %s", self.lake.uri, error)
            if self._lost is not None:
                return

    def renew(self) -> None:
        """Extend the lease by one conditional write on the version this run last wrote."""
        with self._guard:
            if self._version is None or self._lost is not None:
                return
            document = self._document()
            if not self.lake.replace_if(LOCK_KEY, document, self._version):
                self._lost = "another run replaced it after its lease expired"
                log.error("lake %s: %s", self.lake.uri, self._lost)
                return
            found = self.lake.read_versioned(LOCK_KEY)
            if found is None or Holder.parse(found[0]).run_id != self.run_id:
                self._lost = "it vanished or changed hands during a renewal"
                return
            self._version = found[1]
