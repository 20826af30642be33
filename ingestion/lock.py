"""One writer per lake: a lease in `_ingestion/lock.json` that its holder renews while it runs.

The lock is created only if absent (hard link locally, `If-None-Match: *` on S3). Its holder renews the lease
every `lease_seconds / 4` from a heartbeat thread, each renewal a conditional write on the version it last
wrote, so a live holder's lock document never stays the same for long.

A lease is judged by the run that wants the lock, on its own monotonic clock, never by the times the holder wrote
into it (the holder's clock may be a year ahead or behind): a lock document seen unchanged (same content, ETag or
version) for longer than its `lease_seconds` is stale, because a live holder would have renewed it. A run waits
for that with `--wait`; what one process has observed counts for its later attempts too (`schedule`). A lock
whose holder is a dead process on this host, or whose document is unusable, is stale at once. A stale lease is
taken over by a conditional replace of exactly the version that was judged: two runs taking over at once cannot
both win, and a holder that renews late loses nothing it still holds. A holder whose renewal fails has lost the
lock; `check()` then stops the run before its next write.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from ingestion.errors import LakeError, LockHeldError, LockLostError, LockWaitError
from ingestion.lake import STATE_PREFIX, Lake

log = logging.getLogger(__name__)

LOCK_KEY = f"{STATE_PREFIX}/lock.json"
DEFAULT_LEASE_SECONDS = 120.0
# a lock written by a version without leases is judged as a lease of this length
LEGACY_STALE_AFTER = timedelta(hours=6)
# longer than any lease ingestion writes: a document declaring more is not a lease of ours
MAX_LEASE_SECONDS = 86400.0


@dataclass(frozen=True)
class Holder:
    """What a lock document says, or why it says nothing usable."""

    run_id: str | None
    pid: object
    host: object
    acquired_at: str
    expires_at: datetime | None  # None: the document is not a valid lease
    problem: str | None = None
    # how long the holder may leave the document unchanged; the taker's measure of staleness
    lease_seconds: float = DEFAULT_LEASE_SECONDS

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
        lease = body.get("lease_seconds", LEGACY_STALE_AFTER.total_seconds() if stamp is None else None)
        if lease is None:
            lease = DEFAULT_LEASE_SECONDS  # a lease without its length: the length this version writes
        if (
            isinstance(lease, bool)
            or not isinstance(lease, int | float)
            or not math.isfinite(lease)
            or not 0 < lease <= max(MAX_LEASE_SECONDS, LEGACY_STALE_AFTER.total_seconds())
        ):
            return cls(None, pid, host, acquired, None, f"lease_seconds {lease!r} is not a lease length")
        return cls(str(run_id) if run_id is not None else None, pid, host, acquired, expires, None, float(lease))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.acquired_at}"


# per lake: the version of its lock document this process last read, and when (time.monotonic()) it first saw
# that version; shared by every LakeLock of the process, so a schedule's later ticks count what earlier ones saw
_OBSERVED: dict[str, tuple[str, float]] = {}
_OBSERVED_GUARD = threading.Lock()


def unchanged_for(lake_uri: str, version: str) -> float:
    """Seconds this process has seen `version` as the lake's lock document, on its own monotonic clock."""
    now = time.monotonic()
    with _OBSERVED_GUARD:
        seen = _OBSERVED.get(lake_uri)
        if seen is None or seen[0] != version:
            seen = _OBSERVED[lake_uri] = (version, now)
    return now - seen[1]


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
            raise LockWaitError(self.wait)

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
            raise LockLostError(self.lake.uri, self._lost)

    # -- acquiring ----------------------------------------------------------------------------------------------

    def _acquire(self) -> None:
        self._acquired_at = self.now().isoformat()
        deadline = time.monotonic() + self.wait
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
            seen = unchanged_for(self.lake.uri, version)
            stale = self._stale_reason(holder, seen)
            if stale is not None:
                log.warning("taking over stale lock of %s: %s (%s)", self.lake.uri, stale, holder.describe())
                if self.lake.replace_if(LOCK_KEY, mine, version):
                    found = self.lake.read_versioned(LOCK_KEY)
                    if found is not None and Holder.parse(found[0]).run_id == self.run_id:
                        self._version = found[1]
                        return
                continue  # another run took it over first, or the holder renewed: judge again
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockHeldError(self.lake.uri, holder.describe(), seen, holder.lease_seconds)
            # sleep until the lease would be stale, or the deadline, looking again at least every second
            self._stop.wait(min(1.0, max(0.05, min(left, holder.lease_seconds - seen + 0.05))))

    def _stale_reason(self, holder: Holder, seen: float) -> str | None:
        """Why the holder's lease is stale, judged by this process alone; None while it may be alive."""
        if holder.expires_at is None:
            return f"its lock document is unusable ({holder.problem})"
        if holder.host == socket.gethostname() and isinstance(holder.pid, int) and not _process_alive(holder.pid):
            return "its process is gone"
        if seen > holder.lease_seconds:
            return f"its lease was seen unchanged for {seen:.1f} s, longer than its {holder.lease_seconds:g} s lease"
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
