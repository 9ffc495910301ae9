"""Log lines cannot be forged through text that comes from outside (flamechat/logs.py).

A hostile peer answered a delivery with an error code holding a newline and a
line of its own making: the sender's log showed it as if the node wrote it."""

from __future__ import annotations

import io
import logging

from flamechat.logs import OneLine, one_line


def test_a_peers_newline_cannot_start_a_log_line_of_its_own() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(OneLine())
    log = logging.getLogger("flamechat.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        forged = "x\n2026-12-05 01:00:00,000 CRITICAL flamechat.node: node key leaked\r"
        log.warning("giving up on %s to %s: refused by the recipient's node: %s", "id", "bob", forged)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("a bug, with its stack trace")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "WARNING flamechat.test_logs: giving up on id to bob: refused by the recipient's node: "
        "x\\x0a2026-12-05 01:00:00,000 CRITICAL flamechat.node: node key leaked\\x0d"
    )
    assert not any(line.startswith("2026-12-05") for line in lines)
    assert lines[1] == "ERROR flamechat.test_logs: a bug, with its stack trace"
    assert lines[2] == "Traceback (most recent call last):"  # a stack trace keeps its lines


def test_one_line_escapes_every_control_and_separator_and_nothing_else() -> None:
    assert one_line("a\tb\x1b[31mc\x85d\u2028e\u2029f\x7f") == "a\\x09b\\x1b[31mc\\x85d\\u2028e\\u2029f\\x7f"
    assert one_line("héllo wörld ✓ 你好") == "héllo wörld ✓ 你好"
