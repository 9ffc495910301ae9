"""What every benchmark shares: the ceiling server, percentiles, process memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from flamechat.devnet import DevNetwork, Server, free_port, http_json

HERE = Path(__file__).parent


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def ceiling_server(folder: Path) -> Iterator[str]:
    """Start bench/ceiling_server.py on a free loopback port; yield its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "ceiling_server.py"), "--port", str(port), "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if http_json("GET", url + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the ceiling server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def small_post_ceiling(url: str, *, in_flight: int = 16, seconds: float = 3.0) -> dict[str, float]:
    """Requests/s and latency of 200-byte POSTs to the trivial endpoint."""
    body = b'{"body":"' + b"x" * 180 + b'"}'
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def worker() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with session.post(
                    url + "/echo", data=body, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                latencies.append((time.perf_counter() - t) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - began
    return {
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


@dataclass
class Pair:
    """Alice on node A and Bob on node B, logged in: what every node benchmark needs."""

    a: Server
    b: Server
    alice: dict[str, str]  # request headers: session cookie and CSRF token
    bob: dict[str, str]

    def peak_rss(self) -> tuple[float, float]:
        assert self.a.process is not None
        assert self.b.process is not None
        return peak_rss_mb(self.a.process.pid), peak_rss_mb(self.b.process.pid)


def login(url: str, username: str, password: str) -> dict[str, str]:
    status, body, headers = http_json(
        "POST", url + "/api/v1/sessions", {"username": username, "password": password}, timeout=30
    )
    assert status == 201, (status, body)
    return {"Cookie": headers["set-cookie"].split(";")[0], "X-CSRF-Token": body["csrf_token"]}


@contextmanager
def two_nodes(root: Path, node_args: list[str]) -> Iterator[Pair]:
    """A directory and two nodes (each with ``node_args``), alice and bob logged in."""
    net = DevNetwork(root, password_profile="minimal", presence_interval=10.0)
    try:
        net.start_directory()
        node_a = net.start_node(None, *node_args)
        node_b = net.start_node(None, *node_args)
        net.create_users({"alice": "alice-bench-pass", "bob": "bob-bench-pass"})
        yield Pair(
            node_a,
            node_b,
            login(node_a.url, "alice", "alice-bench-pass"),
            login(node_b.url, "bob", "bob-bench-pass"),
        )
    finally:
        net.stop()


def new_id() -> str:
    return str(uuid.uuid4())


def env_line() -> str:
    load = os.getloadavg()[0]
    return f"machine: {os.cpu_count()} cores, load average {load:.2f} at start"
