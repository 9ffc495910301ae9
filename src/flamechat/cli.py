"""The ``flame`` command: run a directory or a node, the demo, and administration."""

from __future__ import annotations

import asyncio
import getpass
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import uvicorn

from flamechat import logs
from flamechat.config import DirectorySettings, NodeSettings
from flamechat.protocol.errors import FlameError


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--config file.toml``: its tables ([directory], [node], [user], …) become defaults."""
    if value:
        try:
            data = tomllib.loads(Path(value).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.BadParameter(f"cannot read config: {exc}") from exc
        try:
            ctx.default_map = config_defaults(ctx.command, data)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


def config_defaults(command: click.Command, table: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A click default map from a config table.

    Keys are option names (``data-dir`` or ``data_dir``); a table named after a
    subcommand (``[user.reset-password]``) holds that subcommand's options, and
    a group's own keys (``[user] data-dir = …``) apply to all its subcommands
    that have the option. A key no command there has, or a table naming no
    command, is an error (ValueError naming both): a typo must not pass
    silently for a setting.
    """
    _check_names(command, table, where)
    return _defaults(command, table)


def _option_names(command: click.Command, *, deep: bool) -> set[str]:
    names = {p.name for p in command.params if p.name and p.expose_value}
    if deep and isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _option_names(sub, deep=True)
    return names


def _check_names(command: click.Command, table: dict[str, Any], where: str) -> None:
    known = _option_names(command, deep=True)
    commands = command.commands if isinstance(command, click.Group) else {}
    section = f"[{where.rstrip('.')}]" if where else "(top level)"
    for name, value in table.items():
        if isinstance(value, dict):
            if name not in commands:
                raise ValueError(f"config table [{where}{name}]: no such command")
            _check_names(commands[name], value, f"{where}{name}.")
        elif name.replace("-", "_") not in known:
            raise ValueError(f"config table {section}: no such option {name!r}")


def _defaults(command: click.Command, table: dict[str, Any]) -> dict[str, Any]:
    options = {k.replace("-", "_"): v for k, v in table.items() if not isinstance(v, dict)}
    if not isinstance(command, click.Group):
        own = _option_names(command, deep=False)
        return {k: v for k, v in options.items() if k in own}  # inherited keys it does not have
    defaults: dict[str, Any] = dict(options)
    for name, sub in command.commands.items():
        sub_table = table.get(name, {})
        inherited = {k: v for k, v in table.items() if not isinstance(v, dict)}
        defaults[name] = _defaults(sub, {**inherited, **sub_table})
    return defaults


@click.group(context_settings={"auto_envvar_prefix": "FLAME", "help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with [directory], [node] and [user] tables of option defaults.",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Logging detail.",
)
def main(log_level: str) -> None:
    """Flame Chat: end-to-end encrypted, peer-to-peer chat for one organisation."""
    logs.configure(log_level)


def _settings(cls: type[Any], options: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names and v is not None})


def _serve(app: Any, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, help="Port to listen on.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("flame-data/directory"),
    show_default=True,
    help="Where the database and key live.",
)
@click.option(
    "--presence-ttl",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before an unrefreshed presence report expires.",
)
@click.option(
    "--open-registration/--closed-registration",
    default=True,
    show_default=True,
    help="Let any node register itself.",
)
@click.option(
    "--password-profile",
    type=click.Choice(["interactive", "minimal"]),
    default="interactive",
    show_default=True,
    help="Argon2id cost (minimal: tests only).",
)
@click.option(
    "--login-checks-per-minute-per-node",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Password checks one node may ask for per minute.",
)
@click.option(
    "--login-checks-per-minute-per-account",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Password checks of one account per minute, from all nodes together.",
)
@click.option(
    "--requests-per-second-per-node",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Directory API requests one node may make per second (then 429 with Retry-After).",
)
def directory(**options: Any) -> None:
    """Run the directory (login server)."""
    from flamechat.directory.app import create_directory_app

    settings = _settings(DirectorySettings, options)
    _serve(create_directory_app(settings), settings.host, settings.port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8701, show_default=True, help="Port to listen on.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("flame-data/node"),
    show_default=True,
    help="Where the database and key live.",
)
@click.option(
    "--directory-url", default="http://127.0.0.1:8700", show_default=True, help="Base URL of the directory."
)
@click.option(
    "--public-url", default=None, help="URL other nodes use to reach this one (default: http://HOST:PORT)."
)
@click.option(
    "--directory-key",
    default=None,
    help="Pin the directory's public key (base64); default: trust on first use.",
)
@click.option(
    "--presence-interval",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between presence reports and user-list refreshes.",
)
@click.option(
    "--tab-timeout",
    type=click.FloatRange(min=1.0),
    default=45.0,
    show_default=True,
    help="Seconds a browser tab may go unheard (no heartbeat) before it is closed and its user, "
    "if it was their last tab, shown offline.",
)
@click.option(
    "--session-ttl", type=float, default=12 * 3600.0, show_default=True, help="Session lifetime in seconds."
)
@click.option(
    "--outbox-ttl",
    type=float,
    default=7 * 24 * 3600.0,
    show_default=True,
    help="Seconds an undelivered envelope is retried before it fails.",
)
@click.option(
    "--retry-base",
    type=float,
    default=0.5,
    show_default=True,
    help="First retry delay in seconds (doubles each attempt).",
)
@click.option(
    "--retry-max", type=float, default=300.0, show_default=True, help="Longest retry delay in seconds."
)
@click.option(
    "--delivery-concurrency",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Batches of envelopes delivered at once (each to a different node).",
)
@click.option(
    "--password-profile",
    type=click.Choice(["interactive", "minimal"]),
    default="interactive",
    show_default=True,
    help="Argon2id cost (minimal: tests only).",
)
@click.option(
    "--max-request-bytes",
    type=int,
    default=512 * 1024,
    show_default=True,
    help="Largest request body accepted.",
)
@click.option(
    "--relay/--no-relay",
    default=True,
    show_default=True,
    help="Hold sealed envelopes for other nodes' users.",
)
@click.option(
    "--relay-after",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a recipient's node may stay unreachable before envelopes go to a relay.",
)
@click.option(
    "--relay-collect-interval",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between collections from relays.",
)
@click.option(
    "--relay-max-per-recipient",
    type=int,
    default=10_000,
    show_default=True,
    help="Envelopes held as a relay for one recipient.",
)
@click.option(
    "--relay-max-per-depositor",
    type=int,
    default=100_000,
    show_default=True,
    help="Envelopes held as a relay from one depositing node.",
)
@click.option(
    "--relay-max-bytes-per-depositor",
    type=click.IntRange(min=1),
    default=1024**3,
    show_default=True,
    help="Bytes of envelopes held as a relay from one depositing node.",
)
@click.option(
    "--relay-ttl",
    type=float,
    default=14 * 24 * 3600.0,
    show_default=True,
    help="Seconds a relay keeps an uncollected envelope.",
)
@click.option(
    "--idle-away-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="Idle time in the browser before the status turns to away.",
)
@click.option(
    "--messages-per-minute",
    type=int,
    default=120,
    show_default=True,
    help="Messages one user may send per minute.",
)
@click.option(
    "--bytes-per-minute",
    type=int,
    default=2 * 1024 * 1024,
    show_default=True,
    help="Bytes of message text one user may send per minute.",
)
@click.option(
    "--file-bytes-per-hour",
    type=int,
    default=10 * 1024**3,
    show_default=True,
    help="Bytes of files one user may send per hour.",
)
@click.option(
    "--peer-requests-per-second",
    type=int,
    default=200,
    show_default=True,
    help="Federation requests accepted from one peer node per second.",
)
@click.option(
    "--logins-per-minute-per-address",
    type=int,
    default=30,
    show_default=True,
    help="Login attempts from one client address per minute.",
)
@click.option(
    "--logins-per-minute-per-account",
    type=int,
    default=10,
    show_default=True,
    help="Login attempts on one account per minute (failures also back off).",
)
@click.option(
    "--login-free-failures",
    type=int,
    default=5,
    show_default=True,
    help="Failed logins on one account before each further failure doubles a wait.",
)
@click.option(
    "--login-max-lockout",
    type=float,
    default=900.0,
    show_default=True,
    help="Longest wait in seconds after failed logins on one account.",
)
@click.option(
    "--profile-fresh-for",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a cached profile of another node's user is shown without asking its node.",
)
@click.option(
    "--user-list-max-age",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds a user list fetched from the directory answers page loads before it is fetched again.",
)
@click.option(
    "--max-file-bytes",
    type=int,
    default=2 * 1024**3,
    show_default=True,
    help="Largest file a user may send or receive.",
)
@click.option(
    "--storage-quota-bytes",
    type=int,
    default=20 * 1024**3,
    show_default=True,
    help="File storage per user on this node (sent and received).",
)
@click.option(
    "--blob-send-rate",
    type=int,
    default=0,
    show_default=True,
    help="Bytes per second one file transfer to a peer may use (0: unlimited).",
)
def node(**options: Any) -> None:
    """Run a node that hosts users."""
    from flamechat.node import create_node_app

    settings = _settings(NodeSettings, options)
    _serve(create_node_app(settings), settings.host, settings.port)


@main.group()
def user() -> None:
    """Administer accounts in the directory's database."""


_user_data_dir = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("flame-data/directory"),
    show_default=True,
    help="The directory's data folder.",
)
_password = click.option("--password", default=None, help="The password (prompted for if absent).")
_profile = click.option(
    "--password-profile",
    type=click.Choice(["interactive", "minimal"]),
    default="interactive",
    show_default=True,
    help="Argon2id cost.",
)


def _ask_password(password: str | None) -> str:
    if password is not None:
        return password
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise click.ClickException("the passwords differ")
    return first


def _run_admin(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except FlameError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc


@user.command("create")
@click.argument("username")
@click.option("--display-name", default=None, help="Name shown to others.")
@_password
@_profile
@_user_data_dir
def user_create(
    username: str, display_name: str | None, password: str | None, password_profile: str, data_dir: Path
) -> None:
    """Create an account."""
    from flamechat.directory.app import open_directory

    service = open_directory(DirectorySettings(data_dir=data_dir, password_profile=password_profile))

    async def run() -> None:
        try:
            await service.create_user(username, _ask_password(password), display_name=display_name)
        finally:
            await service.db.close()

    _run_admin(run())
    click.echo(f"created {username}")


@user.command("reset-password")
@click.argument("username")
@_password
@_profile
@_user_data_dir
def user_reset(username: str, password: str | None, password_profile: str, data_dir: Path) -> None:
    """Set a new password for an account."""
    from flamechat.directory.app import open_directory

    service = open_directory(DirectorySettings(data_dir=data_dir, password_profile=password_profile))

    async def run() -> None:
        try:
            await service.reset_password(username, _ask_password(password))
        finally:
            await service.db.close()

    _run_admin(run())
    click.echo(
        f"password of {username} reset; nodes that cached the old one need `flame node-admin forget-user`"
    )


@user.command("list")
@_user_data_dir
def user_list(data_dir: Path) -> None:
    """List accounts."""
    from flamechat.directory.app import open_directory

    service = open_directory(DirectorySettings(data_dir=data_dir))

    async def run() -> None:
        try:
            for account in await service.accounts():
                keys = "keys" if account.sign_key else "no keys"
                click.echo(f"{account.username}\t{account.display_name}\t{account.home_node or '-'}\t{keys}")
        finally:
            await service.db.close()

    _run_admin(run())


@main.group("node-admin")
def node_admin() -> None:
    """Administer a node's own database (run where the node runs)."""


@node_admin.command("forget-user")
@click.argument("username")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("flame-data/node"),
    show_default=True,
    help="The node's data folder.",
)
def forget_user(username: str, data_dir: Path) -> None:
    """Drop a user's cached password verifier and keys (after a password reset)."""
    from flamechat.node import build_node

    node = build_node(NodeSettings(data_dir=data_dir))

    async def run() -> None:
        try:
            await node.accounts.forget_user(username)
        finally:
            await node.db.close()

    _run_admin(run())
    click.echo(f"{username} forgotten; their next login creates new keys")


def _node_blocks(data_dir: Path, action: str, kind: str, value: str) -> None:
    from flamechat.node import build_node

    node = build_node(NodeSettings(data_dir=data_dir))

    async def run() -> None:
        try:
            if action == "block":
                await node.blocks.admin_block(kind, value)
            else:
                await node.blocks.admin_unblock(kind, value)
        finally:
            await node.db.close()

    _run_admin(run())
    click.echo(f"{action}ed {kind} {value}")


_node_data_dir = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("flame-data/node"),
    show_default=True,
    help="The node's data folder.",
)


@node_admin.command("block-node")
@click.argument("node_id")
@_node_data_dir
def block_node(node_id: str, data_dir: Path) -> None:
    """Refuse every federation request from a node."""
    _node_blocks(data_dir, "block", "node", node_id)


@node_admin.command("unblock-node")
@click.argument("node_id")
@_node_data_dir
def unblock_node(node_id: str, data_dir: Path) -> None:
    """Accept a blocked node again."""
    _node_blocks(data_dir, "unblock", "node", node_id)


@node_admin.command("block-user")
@click.argument("username")
@_node_data_dir
def block_user(username: str, data_dir: Path) -> None:
    """Drop a user's envelopes for everyone on this node."""
    _node_blocks(data_dir, "block", "user", username)


@node_admin.command("unblock-user")
@click.argument("username")
@_node_data_dir
def unblock_user(username: str, data_dir: Path) -> None:
    """Accept a blocked user's envelopes again."""
    _node_blocks(data_dir, "unblock", "user", username)


@node_admin.command("blocks")
@_node_data_dir
def list_blocks(data_dir: Path) -> None:
    """List the operator's blocks."""
    from flamechat.node import build_node

    node = build_node(NodeSettings(data_dir=data_dir))

    async def run() -> None:
        try:
            for kind, value in await node.blocks.admin_list():
                click.echo(f"{kind}\t{value}")
        finally:
            await node.db.close()

    _run_admin(run())


@main.command()
@click.option("--nodes", default=3, show_default=True, help="How many nodes to start.")
@click.option("--users-per-node", default=2, show_default=True, help="Demo users per node.")
@click.option(
    "--base-port", default=8700, show_default=True, help="Directory port; nodes take the next ones."
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Scratch folder (wiped at start).",
)
def demo(nodes: int, users_per_node: int, base_port: int, data_dir: Path) -> None:
    """Start a directory, several nodes and demo users; Ctrl-C stops everything."""
    from flamechat.demo import run_demo

    sys.exit(run_demo(nodes=nodes, users_per_node=users_per_node, base_port=base_port, data_dir=data_dir))
