"""The machine's ceiling: trivial endpoints on the same stack as a node.

Starlette under uvicorn with uvloop and httptools (what `flame node` runs),
no framework work, no crypto, no database: what any node endpoint could at
best reach on this machine in this run.

    POST /echo          answers a small JSON document (200-byte message ceiling)
    PUT  /sink          streams the body to a file and fsyncs it (upload ceiling)
    GET  /blob/{name}   streams a file back (download ceiling)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route


def build(folder: Path) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"ok": True, "bytes": len(body)})

    async def sink(request: Request) -> JSONResponse:
        size = 0
        with (folder / "sink.bin").open("wb") as handle:
            async for piece in request.stream():
                handle.write(piece)
                size += len(piece)
            handle.flush()
            os.fsync(handle.fileno())
        return JSONResponse({"bytes": size})

    async def blob(request: Request) -> FileResponse:
        return FileResponse(folder / request.path_params["name"])

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/sink", sink, methods=["PUT"]),
            Route("/blob/{name}", blob),
            Route("/healthz", lambda _r: JSONResponse({"status": "ok"})),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.dir),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
