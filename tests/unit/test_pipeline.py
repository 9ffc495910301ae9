"""ThreadStage (services/pipeline.py): pieces reach the work in order, a stage feeding
the next keeps the order end to end, and an error anywhere reaches the producer."""

from __future__ import annotations

import pytest

from flamechat.services.pipeline import ThreadStage


async def test_a_stage_feeding_another_keeps_every_piece_in_order() -> None:
    seen: list[bytes] = []
    writer = ThreadStage(lambda piece: seen.append(piece) or None, depth=2)
    sealer = ThreadStage(lambda piece: piece.upper() if piece != b"skip" else b"", depth=2, then=writer)
    for i in range(200):
        await sealer.put(b"skip" if i % 7 == 0 else f"p{i}".encode())
    await sealer.close()
    await writer.close()
    assert seen == [f"P{i}".encode() for i in range(200) if i % 7]  # empty results are not passed on


async def test_an_error_in_the_second_stage_reaches_the_producer_of_the_first() -> None:
    def fail(piece: bytes) -> None:
        if piece == b"B":
            raise OSError("disk full")

    writer = ThreadStage(fail, depth=1)
    sealer = ThreadStage(lambda piece: piece.upper(), depth=1, then=writer)

    async def produce() -> None:
        for piece in [b"a", b"b", *[b"c"] * 100]:
            await sealer.put(piece)
        await sealer.close()

    with pytest.raises(OSError, match="disk full"):
        await produce()
    with pytest.raises(OSError, match="disk full"):
        await writer.close()
