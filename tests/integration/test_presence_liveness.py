"""Presence follows open tabs within a bounded time, even when a client vanishes
without closing its connection (a laptop shut, the network cut): real nodes
with a 3 s tab timeout, and clients that stop answering without a word.

The vanished client is a raw socket that opens alice's event stream and then
neither reads nor closes it: TCP keeps that connection up for minutes, so only
the missing heartbeats can tell the node she is gone."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import make_network
from tests.support import ApiSession, EventStream, eventually, server_errors

pytestmark = pytest.mark.integration

TAB_TIMEOUT = 3.0
# Offline within the tab timeout, plus a sweep, a presence round and a push; the
# rest is slack for a loaded machine (a client that stays "online" never gets there).
BOUND = TAB_TIMEOUT + 12.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    timeout = ["--tab-timeout", str(TAB_TIMEOUT)]
    network = make_network(tmp_path_factory.mktemp("liveness"), node_args=[timeout, timeout])
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(autouse=True)
def alice_starts_offline(bob: ApiSession, alice: ApiSession) -> None:
    eventually(lambda: not seen_online(bob, "alice"), timeout=BOUND, what="alice offline to begin with")


def seen_online(viewer: ApiSession, username: str) -> bool:
    return bool(viewer.listed(username)["online"])


class SilentTab:
    """Opens the session's event stream on a raw socket, then goes quiet: it reads
    nothing more, answers no heartbeat, and does not close the connection."""

    def __init__(self, session: ApiSession) -> None:
        parts = urlsplit(session.node.url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        request = (
            f"GET /api/v1/events?tab={uuid.uuid4()} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Cookie: {session.cookie}\r\nAccept: text/event-stream\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "the node closed the stream at once"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]

    def closed_by_the_node(self) -> bool:
        """Read what the node sent meanwhile: True once it has ended the stream."""
        self.sock.settimeout(5)
        try:
            while chunk := self.sock.recv(65536):
                if chunk.endswith(b"0\r\n\r\n"):  # the chunked body's end
                    return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class PollingTab:
    """A page without a stream (it polls), sending its heartbeat every third of the
    tab timeout from a thread, until stopped."""

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self.path = f"/api/v1/me/tabs/{uuid.uuid4()}"
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.session.call("PUT", self.path)
            assert status == 200, body
            assert body["timeout"] == TAB_TIMEOUT
            self.beats += 1
            self._stop.wait(TAB_TIMEOUT / 3)

    def __enter__(self) -> PollingTab:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_client_that_vanishes_without_closing_is_shown_offline_within_the_tab_timeout(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    tab = SilentTab(alice)
    try:
        eventually(lambda: seen_online(bob, "alice"), what="alice online to bob")
        # Her connection is still up (nothing closed it), but she answers nothing.
        eventually(lambda: not seen_online(bob, "alice"), timeout=BOUND, what="alice offline to bob")
        assert eventually(tab.closed_by_the_node, timeout=BOUND, what="the stream ended by the node")
    finally:
        tab.close()
    assert not server_errors(net)


def test_a_tab_that_answers_its_heartbeats_stays_online_past_the_timeout(
    alice: ApiSession, bob: ApiSession
) -> None:
    with EventStream(alice) as tab:
        eventually(lambda: seen_online(bob, "alice"), what="alice online to bob")
        # Five heartbeats, one every third of the timeout: well past the timeout.
        eventually(lambda: tab.heartbeats >= 5, timeout=BOUND, what="five heartbeats")
        assert seen_online(bob, "alice")
        assert tab.error is None
    eventually(lambda: not seen_online(bob, "alice"), what="offline once the tab closes")


def test_a_polling_tab_counts_as_online_while_it_polls_and_offline_soon_after_it_stops(
    alice: ApiSession, bob: ApiSession
) -> None:
    with PollingTab(alice) as tab:
        eventually(lambda: seen_online(bob, "alice"), what="the polling alice online to bob")
        eventually(lambda: tab.beats >= 5, timeout=BOUND, what="five heartbeats")
        assert seen_online(bob, "alice")
    eventually(lambda: not seen_online(bob, "alice"), timeout=BOUND, what="offline once it stopped")
