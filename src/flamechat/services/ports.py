"""What node services need from the outside world, as small protocols.

The federation package implements them over HTTP; tests hand in fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class TransportError(Exception):
    """A call to another server failed.

    ``transient`` errors (unreachable, timeout, 5xx, 429) are worth retrying;
    others (4xx) mean the request itself was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        code: str | None = None,
        peer_message: str | None = None,
        peer_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.code = code
        self.peer_message = peer_message  # the other side's own error message, if any
        self.peer_details = peer_details or {}  # and its error details


class DirectoryPort(Protocol):
    """The directory API as a node sees it. Answers are raw signed JSON."""

    async def fetch_key(self) -> dict[str, Any]: ...

    async def register_node(self, url: str, public_key: str, relay: bool) -> dict[str, Any]: ...

    async def list_nodes(self) -> dict[str, Any]: ...

    async def get_node(self, node_id: str) -> dict[str, Any]: ...

    async def check_login(self, username: str, password: str) -> dict[str, Any]: ...

    async def publish_keys(self, username: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get_user(self, username: str) -> dict[str, Any]: ...

    async def list_users(self) -> dict[str, Any]: ...

    async def report_presence(self, users: list[dict[str, Any]]) -> None: ...

    async def set_card(self, username: str, card: dict[str, str]) -> dict[str, Any]: ...


class PeerPort(Protocol):
    """Other nodes' federation API."""

    async def deliver(self, node_url: str, envelope: dict[str, Any]) -> dict[str, Any]: ...

    async def deliver_batch(self, node_url: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One outcome per envelope: ``{"id", "status"}`` or ``{"id", "status", "error"}``.

        Raises TransportError when the node could not be asked at all."""
        ...

    async def deposit(
        self, relay_url: str, recipient_node: str, envelope: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def fetch_relayed(self, relay_url: str, limit: int) -> dict[str, Any]: ...

    async def ack_relayed(self, relay_url: str, seqs: list[int]) -> dict[str, Any]: ...

    async def presence(self, node_url: str) -> dict[str, Any]: ...

    async def push_presence(self, node_url: str, users: list[dict[str, Any]]) -> None:
        """Tell a peer its view of our users at once (nothing if it lacks the feature)."""
        ...

    async def features(self, node_url: str) -> frozenset[str]:
        """The optional features a peer speaks (``GET /federation/v1/version``)."""
        ...

    async def typing(self, node_url: str, envelope: dict[str, Any]) -> None:
        """Hand a typing notice to the recipient's node (short timeout, no retry)."""
        ...

    async def profile(self, node_url: str, username: str) -> dict[str, Any]: ...

    async def avatar(self, node_url: str, username: str) -> bytes: ...

    async def fetch_blob(
        self, node_url: str, blob_id: str, offset: int, sink: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Stream the blob's bytes from ``offset`` on into ``sink``."""
