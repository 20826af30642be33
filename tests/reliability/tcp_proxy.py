"""A TCP proxy on loopback in front of a server (Postgres), whose open connections a test can cut.

Bytes are forwarded both ways untouched; `cut()` resets every connection open at that moment (the client reads a
connection reset, as when a network device drops the flow) while new connections are served as before, so the same
address serves the rerun. Daemon threads, one per direction: the proxy dies with the test process.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

HOST = "127.0.0.1"


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self.server = socket.create_server((HOST, 0))
        self.port: int = self.server.getsockname()[1]
        self.open: list[tuple[socket.socket, socket.socket]] = []
        self.cuts = 0
        self.lock = threading.Lock()

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.close()
        self.cut()

    def dsn(self, dsn: str, port: int) -> str:
        """`dsn` (to `port` on loopback) pointed at the proxy instead."""
        return dsn.replace(f"{HOST}:{port}/", f"{HOST}:{self.port}/")

    def cut(self) -> int:
        """Reset every open connection; how many were cut."""
        with self.lock:
            pairs, self.open = self.open, []
        for pair in pairs:
            for sock in pair:
                # linger 0: close sends a reset, not an orderly end of stream
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        self.cuts += len(pairs)
        return len(pairs)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # the proxy was closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self.lock:
                self.open.append(pair)
            for source, sink in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket], source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut, or the other side went away
        with self.lock:
            if pair not in self.open:
                return  # cut: its sockets are closed
            # one side ended: the connection is over (the other direction's thread ends on the shutdown)
            self.open.remove(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
