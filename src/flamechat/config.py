"""Settings of a node and of the directory.

Precedence: command-line flag > environment variable (``FLAME_<COMMAND>_<OPTION>``)
> config file (TOML, ``--config``) > the defaults below. Every setting is
listed in docs/operations.md (a test keeps that true).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DirectorySettings:
    host: str = "127.0.0.1"
    port: int = 8700
    data_dir: Path = field(default_factory=lambda: Path("flame-data/directory"))
    presence_ttl: float = 30.0
    open_registration: bool = True
    password_profile: str = "interactive"
    login_checks_per_minute_per_node: int = 600
    login_checks_per_minute_per_account: int = 20
    requests_per_second_per_node: int = 50

    @property
    def database_path(self) -> Path:
        return self.data_dir / "directory.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "directory.key"


@dataclass(frozen=True)
class NodeSettings:
    host: str = "127.0.0.1"
    port: int = 8701
    data_dir: Path = field(default_factory=lambda: Path("flame-data/node"))
    directory_url: str = "http://127.0.0.1:8700"
    public_url: str | None = None
    directory_key: str | None = None
    presence_interval: float = 10.0
    tab_timeout: float = 45.0
    session_ttl: float = 12 * 3600.0
    outbox_ttl: float = 7 * 24 * 3600.0
    retry_base: float = 0.5
    retry_max: float = 300.0
    delivery_concurrency: int = 32
    password_profile: str = "interactive"
    max_request_bytes: int = 512 * 1024
    relay: bool = True
    relay_after: float = 30.0
    relay_collect_interval: float = 30.0
    relay_max_per_recipient: int = 10_000
    relay_max_per_depositor: int = 100_000
    relay_max_bytes_per_depositor: int = 1024**3
    relay_ttl: float = 14 * 24 * 3600.0
    idle_away_seconds: float = 300.0
    messages_per_minute: int = 120
    bytes_per_minute: int = 2 * 1024 * 1024
    file_bytes_per_hour: int = 10 * 1024**3
    peer_requests_per_second: int = 200
    logins_per_minute_per_address: int = 30
    logins_per_minute_per_account: int = 10
    login_free_failures: int = 5
    login_max_lockout: float = 900.0
    profile_fresh_for: float = 60.0
    user_list_max_age: float = 2.0
    max_file_bytes: int = 2 * 1024**3
    storage_quota_bytes: int = 20 * 1024**3
    blob_send_rate: int = 0

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "node.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "node.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
