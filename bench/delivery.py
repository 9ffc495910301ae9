"""Delivery across two nodes: alice's POST to the message showing in bob's live stream.

Starts a real directory and two real nodes (rate limits raised out of the
way), logs alice in on node A and bob on node B, holds bob's SSE stream
open, and sends messages from alice with a fixed number in flight. For
each message it times POST → 201 (durably stored and queued on A) and
POST → the event on bob's stream (sealed, delivered, verified, opened and
stored on B). Next to it, in the same run, the ceiling: a trivial endpoint
on the same server stack answering the same 200-byte POSTs.

    python -m bench.delivery [--messages 3000] [--in-flight 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import ceiling_server, env_line, new_id, percentile, small_post_ceiling, two_nodes

# Limits out of the way of a benchmark, but realistic in kind: the moving
# window keeps one timestamp per hit, so a limit of millions would measure
# the limiter's bookkeeping rather than the node.
NO_LIMITS = [
    "--messages-per-minute", "60000",
    "--bytes-per-minute", "1000000000",
    "--peer-requests-per-second", "5000",
]  # fmt: skip


async def run(
    node_a: str,
    node_b: str,
    alice: tuple[str, str],
    bob: tuple[str, str],
    count: int,
    in_flight: int,
    warmup: int,
) -> dict[str, float]:
    arrived: dict[str, float] = {}
    posted: dict[str, float] = {}
    stored: dict[str, float] = {}
    done = asyncio.Event()
    expected: set[str] = set()

    heartbeats: set[asyncio.Task[None]] = set()

    async def heartbeat(session: aiohttp.ClientSession, tab: str) -> None:
        async with session.put(node_b + f"/api/v1/me/tabs/{tab}", headers=bob) as response:
            await response.read()

    async def listen(session: aiohttp.ClientSession) -> None:
        async with session.get(node_b + "/api/v1/events", headers={"Cookie": bob["Cookie"]}) as response:
            event = None
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "alive":  # answered like a page, or dropped
                    beat = asyncio.create_task(heartbeat(session, json.loads(line[5:])["tab"]))
                    heartbeats.add(beat)
                    beat.add_done_callback(heartbeats.discard)
                elif line.startswith("data:") and event == "message":
                    message = json.loads(line[5:])["message"]
                    arrived.setdefault(message["id"], time.perf_counter())
                    if expected and expected <= arrived.keys():
                        done.set()

    async def send(session: aiohttp.ClientSession, ids: list[str]) -> None:
        headers = {**alice, "Content-Type": "application/json"}
        for message_id in ids:
            body = json.dumps({"id": message_id, "body": "Quarterly figures attached, see section 4.2. " * 4})
            posted[message_id] = time.perf_counter()
            async with session.post(
                node_a + "/api/v1/conversations/bob/messages", data=body, headers=headers
            ) as response:
                await response.read()
                assert response.status == 201, response.status
            stored[message_id] = time.perf_counter()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        listener = asyncio.create_task(listen(session))
        await asyncio.sleep(0.5)
        warm = [new_id() for _ in range(warmup)]
        expected.update(warm)
        await asyncio.gather(*(send(session, warm[i::in_flight]) for i in range(in_flight)))
        await asyncio.wait_for(done.wait(), timeout=120)
        done.clear()
        ids = [new_id() for _ in range(count)]
        expected.clear()
        expected.update(ids)
        began = time.perf_counter()
        await asyncio.gather(*(send(session, ids[i::in_flight]) for i in range(in_flight)))
        await asyncio.wait_for(done.wait(), timeout=600)
        listener.cancel()
    end = max(arrived[i] for i in ids)
    to_stream = [(arrived[i] - posted[i]) * 1000 for i in ids]
    to_201 = [(stored[i] - posted[i]) * 1000 for i in ids]
    return {
        "rate": count / (end - began),
        "stream_p50": percentile(to_stream, 0.5),
        "stream_p95": percentile(to_stream, 0.95),
        "stream_p99": percentile(to_stream, 0.99),
        "post_p50": percentile(to_201, 0.5),
        "post_p99": percentile(to_201, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    print(env_line())
    with tempfile.TemporaryDirectory(prefix="flame-bench-") as tmp:
        root = Path(tmp)
        with ceiling_server(root / "ceiling") as url:
            ceiling = asyncio.run(small_post_ceiling(url, in_flight=args.in_flight))
        with two_nodes(root / "net", NO_LIMITS) as pair:
            result = asyncio.run(
                run(pair.a.url, pair.b.url, pair.alice, pair.bob, args.messages, args.in_flight, args.warmup)
            )
            rss = pair.peak_rss()
    print(
        f"ceiling  trivial POST, {args.in_flight} in flight: {ceiling['rps']:8.0f} req/s"
        f"   p50 {ceiling['p50']:6.2f} ms  p99 {ceiling['p99']:6.2f} ms"
    )
    print(
        f"delivery {args.messages} messages, {args.in_flight} in flight: {result['rate']:8.0f} msg/s"
        f"   ({result['rate'] / ceiling['rps']:.1%} of the ceiling)"
    )
    print(
        f"  POST -> bob's live stream   p50 {result['stream_p50']:7.2f} ms"
        f"  p95 {result['stream_p95']:7.2f} ms  p99 {result['stream_p99']:7.2f} ms"
    )
    print(f"  POST -> 201 (durable on A)  p50 {result['post_p50']:7.2f} ms  p99 {result['post_p99']:7.2f} ms")
    print(f"  peak RSS: node A {rss[0]:.0f} MiB, node B {rss[1]:.0f} MiB")


if __name__ == "__main__":
    main()
