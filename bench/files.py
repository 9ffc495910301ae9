"""A large file node to node: throughput and peak memory, against a plain HTTP upload.

Starts a real directory and two real nodes, writes a file of random bytes
(1 GiB by default), and measures, each as MB/s of file bytes:

* upload: alice's node receives the file in 8 MiB parts (as the page sends
  them), sealing and fsyncing as it goes;
* transfer: from the upload's end to bob's node holding the blob, checked
  (pulled by range, hashed, every chunk authenticated, plaintext hash
  compared);
* download: bob reading it back, decrypted as it streams;

and the ceiling in the same run: the same bytes PUT over loopback to a
trivial endpoint on the same server stack that writes them to disk and
fsyncs, and read back from one. Peak RSS (VmHWM) of both nodes is read
from /proc at the end.

    python bench/files.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import ceiling_server, env_line, new_id, two_nodes

PART = 8 * 1024 * 1024
PIECE = 1024 * 1024
LIMITS = ["--max-file-bytes", str(4 * 1024**3), "--storage-quota-bytes", str(16 * 1024**3)]


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            data = os.urandom(min(64 * PIECE, left))
            digest.update(data)
            handle.write(data)
            left -= len(data)
    return digest.hexdigest()


def file_pieces(path: Path, start: int, length: int):  # type: ignore[no-untyped-def]
    async def gen():  # type: ignore[no-untyped-def]
        with path.open("rb") as handle:
            handle.seek(start)
            left = length
            while left:
                data = handle.read(min(PIECE, left))
                left -= len(data)
                yield data

    return gen()


PIDS: dict[str, int] = {}


def profile(folder: str | None, phase: str) -> None:
    """With FLAME_BENCH_PROFILE=<folder>, record both nodes with py-spy for 5 s."""
    if not folder:
        return
    spy = shutil.which("py-spy")
    if spy is None:
        print("FLAME_BENCH_PROFILE needs py-spy (pip install py-spy)", file=sys.stderr)
        return
    for name, pid in PIDS.items():
        out = Path(folder) / f"{phase}-{name}.txt"
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", "5", "--gil", "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def settle() -> None:
    """Flush dirty pages before the next phase: each phase starts with the disk idle,
    rather than paying for the previous phase's writeback."""
    os.sync()
    time.sleep(1.0)


async def ceiling(url: str, path: Path, size: int) -> tuple[float, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        t = time.perf_counter()
        async with session.put(url + "/sink", data=file_pieces(path, 0, size)) as response:
            assert response.status == 200
            await response.read()
        up = size / (time.perf_counter() - t)
        t = time.perf_counter()
        got = 0
        async with session.get(url + "/blob/sink.bin") as response:
            async for data in response.content.iter_chunked(PIECE):
                got += len(data)
        down = got / (time.perf_counter() - t)
    return up, down


async def node_run(
    node_a: str, node_b: str, alice: dict[str, str], bob: dict[str, str], path: Path, size: int, digest: str
) -> dict[str, float]:
    file_id = new_id()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.perf_counter()
        body = {"id": file_id, "name": "board-meeting.mp4", "size": size, "type": "video/mp4"}
        async with session.post(
            node_a + "/api/v1/conversations/bob/uploads", json=body, headers=alice
        ) as response:
            state = await response.json()
            assert response.status == 201, state
        while not state["complete"]:
            offset = state["received"]
            length = min(PART, size - offset)
            headers = {
                **alice,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            async with session.patch(
                node_a + f"/api/v1/uploads/{file_id}", data=file_pieces(path, offset, length), headers=headers
            ) as response:
                state = await response.json()
                assert response.status == 200, state
        t1 = time.perf_counter()
        profile(os.environ.get("FLAME_BENCH_PROFILE"), "transfer")
        while True:
            async with session.get(
                node_b + "/api/v1/conversations/alice/messages?limit=5", headers=bob
            ) as response:
                page = await response.json()
            found = [m for m in page["messages"] if m["id"] == file_id]
            if found and found[0]["file"]["state"] == "ready":
                break
            if found and found[0]["file"]["state"] == "failed":
                raise RuntimeError(json.dumps(found[0]["file"]))
            await asyncio.sleep(0.05)
        t2 = time.perf_counter()
        check = hashlib.sha256()
        got = 0
        async with session.get(node_b + f"/api/v1/files/{file_id}", headers=bob) as response:
            assert response.status == 200
            async for data in response.content.iter_chunked(PIECE):
                check.update(data)
                got += len(data)
        t3 = time.perf_counter()
    assert got == size
    assert check.hexdigest() == digest, "the file bob downloaded is not the file alice sent"
    return {"upload": size / (t1 - t0), "transfer": size / (t2 - t1), "download": size / (t3 - t2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    print(env_line())
    mb = 1e6
    with tempfile.TemporaryDirectory(
        prefix="flame-bench-files-", dir=os.environ.get("FLAME_BENCH_DIR")
    ) as tmp:
        root = Path(tmp)
        source = root / "source.bin"
        digest = write_random(source, size)
        settle()
        with ceiling_server(root / "ceiling") as url:
            up, down = asyncio.run(ceiling(url, source, size))
        (root / "ceiling" / "sink.bin").unlink()
        settle()
        with two_nodes(root / "net", LIMITS) as pair:
            PIDS.update(a=pair.a.process.pid, b=pair.b.process.pid)  # type: ignore[union-attr]
            result = asyncio.run(node_run(pair.a.url, pair.b.url, pair.alice, pair.bob, source, size, digest))
            rss = pair.peak_rss()
    print(f"file of {args.size_mib} MiB, random bytes")
    print(
        f"ceiling   plain HTTP upload to disk (fsync): {up / mb:7.0f} MB/s"
        f"   plain download: {down / mb:7.0f} MB/s"
    )
    print(f"node A    upload, sealed as it arrives:      {result['upload'] / mb:7.0f} MB/s")
    print(
        f"A -> B    transfer, verified on arrival:     {result['transfer'] / mb:7.0f} MB/s"
        f"   ({result['transfer'] / up:.0%} of the upload ceiling)"
    )
    print(f"node B    download, decrypted as it streams: {result['download'] / mb:7.0f} MB/s")
    print(f"peak RSS  node A {rss[0]:.0f} MiB, node B {rss[1]:.0f} MiB")


if __name__ == "__main__":
    main()
