"""A misbehaving HTTP server on loopback: it hangs, or answers 500, on cue."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class BadServer:
    """Every request is recorded; in mode ``"hang"`` it is held open (until the
    mode changes or ``hold`` seconds pass), in mode ``"error"`` it gets a 500."""

    def __init__(self, mode: str = "hang", *, hold: float = 60.0) -> None:
        self.mode = mode
        self.hold = hold
        self.requests: list[tuple[str, str]] = []
        self.hanging = 0
        self.held: list[tuple[str, str]] = []  # the requests hanging now
        self._lock = threading.Lock()
        self._release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                request = (self.command, self.path)
                with stub._lock:
                    stub.requests.append(request)
                    hang = stub.mode == "hang"
                    if hang:
                        stub.hanging += 1
                        stub.held.append(request)
                if hang:
                    stub._release.wait(stub.hold)
                    with stub._lock:
                        stub.hanging -= 1
                        stub.held.remove(request)
                body = json.dumps({"error": {"code": "internal_error", "message": "stub"}}).encode()
                try:
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up waiting

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
        if mode != "hang":
            self._release.set()

    def holding(self, method: str, prefix: str) -> list[tuple[str, str]]:
        """The requests hanging now with this method and path prefix."""
        with self._lock:
            return [(m, p) for m, p in self.held if m == method and p.startswith(prefix)]

    def calls(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str]]:
        with self._lock:
            return [(m, p) for m, p in self.requests if (method in (None, m)) and p.startswith(prefix)]

    def __enter__(self) -> BadServer:
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
