"""Start and stop real directory and node processes on loopback.

Used by ``flame demo`` and by the integration, fault-injection and browser
tests, so that what the tests exercise is what people run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_json(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A tiny blocking JSON client for harness code (not on any hot path)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return exc.code, payload, dict(exc.headers.items())


@dataclass
class Server:
    """One ``flame directory`` or ``flame node`` process."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: TextIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_healthy`)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flamechat", *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, *, wait: float = 30.0) -> Server:
        self.launch()
        self.wait_healthy(wait)
        return self

    def restart(self, *, wait: float = 30.0) -> Server:
        """Stop (if running) and start again: same port, same data folder."""
        self.stop()
        return self.start(wait=wait)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited early; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                status, _, _ = http_json("GET", self.url + "/healthz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the crash the durability tests inject."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class DevNetwork:
    """A directory and any number of nodes under one scratch folder."""

    root: Path
    password_profile: str = "interactive"
    presence_interval: float = 10.0
    directory: Server | None = None
    nodes: list[Server] = field(default_factory=list)

    def start_directory(
        self, port: int | None = None, *, presence_ttl: float = 30.0, extra: Sequence[str] = ()
    ) -> Server:
        port = port or free_port()
        self.directory = Server(
            "directory",
            [
                "directory",
                "--port",
                str(port),
                "--data-dir",
                str(self.root / "directory"),
                "--password-profile",
                self.password_profile,
                "--presence-ttl",
                str(presence_ttl),
                *extra,
            ],
            port,
            self.root / "logs" / "directory.log",
        ).start()
        return self.directory

    def node_server(self, index: int, port: int | None = None, *extra: str) -> Server:
        assert self.directory is not None, "start the directory first"
        port = port or free_port()
        name = f"node{index}"
        return Server(
            name,
            [
                "node",
                "--port",
                str(port),
                "--data-dir",
                str(self.root / name),
                "--directory-url",
                self.directory.url,
                "--password-profile",
                self.password_profile,
                "--presence-interval",
                str(self.presence_interval),
                *extra,
            ],
            port,
            self.root / "logs" / f"{name}.log",
        )

    def start_node(self, port: int | None = None, *extra: str) -> Server:
        server = self.node_server(len(self.nodes) + 1, port, *extra).start()
        self.nodes.append(server)
        return server

    def start_nodes(self, extras: Sequence[Sequence[str]], *, wait: float = 30.0) -> list[Server]:
        """Start one node per entry of ``extras`` (its extra flags), all at once."""
        servers = [self.node_server(len(self.nodes) + 1 + i, None, *extra) for i, extra in enumerate(extras)]
        self.nodes.extend(servers)  # before launching, so that stop() always finds them
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_healthy(wait)
        return servers

    def _user_create_args(self, username: str, password: str, display_name: str | None) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "flamechat",
            "user",
            "create",
            username,
            "--password",
            password,
            "--data-dir",
            str(self.root / "directory"),
            "--password-profile",
            self.password_profile,
        ]
        if display_name:
            args += ["--display-name", display_name]
        return args

    def create_user(self, username: str, password: str, display_name: str | None = None) -> None:
        subprocess.run(
            self._user_create_args(username, password, display_name),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create_users(self, passwords: Mapping[str, str], *, timeout: float = 60.0) -> None:
        """Create several accounts at once (one process each, run side by side)."""
        running = [
            subprocess.Popen(
                self._user_create_args(name, password, None),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name, password in passwords.items()
        ]
        failed = []
        for name, process in zip(passwords, running, strict=True):
            try:
                _, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                _, err = process.communicate()
            if process.returncode != 0:
                failed.append(f"{name}: {err.decode(errors='replace')[-500:]}")
        if failed:
            raise RuntimeError("could not create users:\n" + "\n".join(failed))

    def stop(self) -> None:
        for server in [*self.nodes, *([self.directory] if self.directory else [])]:
            server.stop()
