"""``flame demo``, what ``make demo`` runs: it starts a directory and nodes with
demo users, prints each user's login page and password, those work, and Ctrl-C
stops every process it started."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from flamechat.devnet import http_json, port_is_free

pytestmark = pytest.mark.integration

NODES = 2
STARTED = "Press Ctrl-C to stop."


def free_run_of_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (bounded tries)."""
    for _ in range(200):
        first = random.randrange(20000, 60000 - count)  # noqa: S311 - a port, not a secret
        if all(port_is_free(first + i) for i in range(count)):
            return first
    raise AssertionError("no run of free ports found")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


class Output:
    """The demo's output, read in a thread as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        """After the process ended: the rest is read, and the pipe closed."""
        self._thread.join(timeout=10)
        self._stream.close()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not printed within {timeout}s; printed: {self.lines}")


def test_the_demo_prints_working_logins_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    base = free_run_of_ports(NODES + 1)
    command = [sys.executable, "-m", "flamechat", "demo", "--nodes", str(NODES), "--users-per-node", "1"]
    command += ["--base-port", str(base), "--data-dir", str(tmp_path / "demo")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        output.wait_for(STARTED, timeout=120)
        logins = [line.split() for line in output.lines if "/login" in line and "password" in line]
        assert len(logins) == NODES, output.lines
        node_ports = {f"http://127.0.0.1:{port}/login" for port in range(base + 1, base + NODES + 1)}
        assert {line[0] for line in logins} == node_ports  # a user on each node
        for url, _user, username, _password, password in logins:
            with urllib.request.urlopen(url, timeout=10) as page:
                assert page.status == 200
                assert b'id="login-form"' in page.read()
            node = url.removesuffix("/login")
            status, body, _ = http_json(
                "POST", node + "/api/v1/sessions", {"username": username, "password": password}, timeout=30
            )
            assert (status, body["username"]) == (201, username)

        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 0
        output.wait_for("stopped.", timeout=5)
        for port in range(base, base + NODES + 1):
            assert not listening(port), f"something still listens on {port} after the demo stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        output.close()
