"""Headless Chromium driven through the Chrome DevTools Protocol, with the standard library only.

Chromium started with `--remote-debugging-pipe` reads protocol messages (JSON, each ended by a NUL byte) on its
file descriptor 3 and writes its answers and events on descriptor 4; no port, no WebSocket client, no driver
binary. Debian's `chromium` package is all it needs (`CHROMIUM` in the environment overrides the executable).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# Flags that work as root in a container, keep the browser off the network except for the pages it is sent to,
# and skip first-run work.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """The browser answered with an error, closed its pipe, or did not answer in time."""


def chromium_executable() -> str | None:
    """The Chromium to drive: env CHROMIUM, else `chromium` (Debian) or `chromium-browser` on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _pipes_on_3_and_4(browser_reads: int, browser_writes: int) -> Callable[[], None]:
    """A pre-exec hook that puts the two pipe ends on the child's descriptors 3 and 4."""

    def move() -> None:
        # Either end may already sit on 3 or 4: copy both above 9 (closed at exec) before placing them.
        reads = fcntl.fcntl(browser_reads, fcntl.F_DUPFD_CLOEXEC, 10)
        writes = fcntl.fcntl(browser_writes, fcntl.F_DUPFD_CLOEXEC, 10)
        os.dup2(reads, 3)  # dup2 makes 3 and 4 inheritable
        os.dup2(writes, 4)

    return move


class Chromium:
    """One headless browser process (in its own process group) and its DevTools pipe.

    `call` sends a command and returns its result; events that arrive meanwhile are kept in `events`.
    """

    def __init__(
        self,
        profile_dir: Path,
        *,
        executable: str | None = None,
        width: int = 1280,
        height: int = 800,
        extra_flags: tuple[str, ...] = (),
        log_path: Path | None = None,
    ) -> None:
        found = executable or chromium_executable()
        if found is None:
            raise BrowserError("no Chromium found (install Debian's `chromium` or set CHROMIUM)")
        self.executable = found
        self.profile_dir = profile_dir
        self.width = width
        self.height = height
        self.extra_flags = extra_flags
        self.log_path = log_path or profile_dir.parent / f"{profile_dir.name}.log"
        self.events: list[dict[str, Any]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._to_browser = -1
        self._from_browser = -1
        self._buffer = b""
        self._next_id = 0

    # -- process -------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        browser_reads, to_browser = os.pipe()
        from_browser, browser_writes = os.pipe()
        command = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-pipe",
            *self.extra_flags,
            "about:blank",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=False,  # descriptors Python opens are not inheritable anyway (PEP 446)
                # the hook only duplicates two descriptors between fork and exec
                preexec_fn=_pipes_on_3_and_4(browser_reads, browser_writes),
                start_new_session=True,
            )
        os.close(browser_reads)
        os.close(browser_writes)
        self._to_browser, self._from_browser = to_browser, from_browser
        self.call("Browser.getVersion", timeout=30)  # the browser is up once it answers
        return self

    def close(self, timeout: float = 10) -> None:
        """Ask the browser to quit, then end its whole process group; never raises for a dead browser."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            with contextlib.suppress(OSError):  # a broken pipe: the signals below do the rest
                self._send("Browser.close", {}, None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout / 2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)  # renderers and helpers too: the browser leads its own group
            except ProcessLookupError:
                break  # nothing left in the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout / 2)
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- protocol ------------------------------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_browser, data)
            data = data[written:]
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next message from the browser, waiting until `deadline` (time.monotonic) at most."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("the browser did not answer in time")
            readable, _, _ = select.select([self._from_browser], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser closed its pipe; its log: {self.log_path}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def pump(self) -> None:
        """Take in the events the browser has sent since the last command, without waiting."""
        while b"\0" in self._buffer or select.select([self._from_browser], [], [], 0)[0]:
            message = self._receive(time.monotonic() + 5)
            if "method" in message:
                self.events.append(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None, timeout: float = 15
    ) -> dict[str, Any]:
        """Send one command and wait for its answer; events received meanwhile go to `events`."""
        if self._process is None:
            raise BrowserError("the browser is not running")
        deadline = time.monotonic() + timeout
        wanted = self._send(method, params or {}, session)
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def open_page(self, width: int | None = None, height: int | None = None) -> Page:
        """A new tab, attached in flat mode, with network events on and a fixed viewport."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Network.enable")
        metrics = {"width": width or self.width, "height": height or self.height, "deviceScaleFactor": 1}
        page.call("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
        return page


class Page:
    """One attached tab: commands and events of its session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every event `method` this tab has sent so far."""
        self.browser.pump()
        return [
            event.get("params", {})
            for event in self.browser.events
            if event.get("method") == method and event.get("sessionId") == self.session
        ]

    def navigate(self, url: str, timeout: float = 30) -> None:
        answer = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")

    def evaluate(self, expression: str, timeout: float = 15) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        answer = self.call("Runtime.evaluate", params, timeout=timeout)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {details.get('exception', {}).get('description', details)}")
        return answer.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.25) -> Any:
        """Evaluate `expression` until its value is truthy; that value, or BrowserError with the last one."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError as error:  # e.g. the page is still navigating: look again
                value = error
            else:
                if value:
                    return value
            time.sleep(interval)
        raise BrowserError(f"timed out after {timeout}s waiting for {expression!r}; last value: {value!r}")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", {"format": "png"}, timeout=30)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
