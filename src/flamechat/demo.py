"""``flame demo``: a directory, several nodes and demo users on loopback."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from types import FrameType

import click

from flamechat.devnet import DevNetwork, http_json, port_is_free

NAMES = [
    ("alice", "Alice Archer"),
    ("bob", "Bob Baker"),
    ("carol", "Carol Chen"),
    ("dave", "Dave Diaz"),
    ("erin", "Erin Evans"),
    ("frank", "Frank Fox"),
    ("grace", "Grace Gold"),
    ("heidi", "Heidi Hart"),
    ("ivan", "Ivan Ito"),
    ("judy", "Judy Jones"),
    ("mallory", "Mallory Moss"),
    ("niaj", "Niaj Nagy"),
]


def run_demo(*, nodes: int, users_per_node: int, base_port: int, data_dir: Path) -> int:
    if nodes * users_per_node > len(NAMES):
        raise click.ClickException(f"at most {len(NAMES)} demo users")
    ports = [base_port + i for i in range(nodes + 1)]
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise click.ClickException(f"ports in use: {busy}; pass --base-port")
    shutil.rmtree(data_dir, ignore_errors=True)
    net = DevNetwork(data_dir.resolve(), presence_interval=2.0)  # presence shows within ~2 s
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        click.echo("starting the directory…")
        net.start_directory(ports[0])
        accounts: list[tuple[str, str, str]] = []
        for index in range(nodes):
            server = net.start_node(ports[index + 1])
            click.echo(f"started node {index + 1} at {server.url}")
            for username, display in NAMES[index * users_per_node : (index + 1) * users_per_node]:
                password = f"{username}-demo-pass"
                net.create_user(username, password, display)
                # A first login makes this node the user's home and publishes their keys.
                status, body, _ = http_json(
                    "POST",
                    server.url + "/api/v1/sessions",
                    {"username": username, "password": password},
                    timeout=30,
                )
                if status != 201:
                    raise click.ClickException(f"demo login of {username} failed: {status} {body}")
                accounts.append((server.url, username, password))
        click.echo("\nFlame Chat demo is running. Open a node's login page and sign in:\n")
        for url, username, password in accounts:
            click.echo(f"  {url}/login   user {username:<8} password {password}")
        click.echo(f"\n  directory  {net.directory.url if net.directory else ''}/directory/v1/docs")
        click.echo(f"  logs       {data_dir / 'logs'}\n\nPress Ctrl-C to stop.")
        while not stopping:
            for server in [s for s in (net.directory, *net.nodes) if s is not None]:
                if server.process and server.process.poll() is not None:
                    click.echo(f"{server.name} exited; see {server.log_path}")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        click.echo("\nstopping…")
        net.stop()
        click.echo("stopped.")
