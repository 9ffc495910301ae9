"""The servers' log lines: one event, one line.

Log messages carry text from outside — a peer's error code or message, an
envelope's kind, a file name — and a newline in it would let whoever chose
that text write lines that look like the server's own (log injection).
:class:`OneLine` writes every control character of a message escaped; a
stack trace, which the formatter adds after the message, keeps its lines.
"""

from __future__ import annotations

import logging

# C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n`` becomes ``\\x0a``)."""
    return text.translate(_UNSAFE)


class OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = one_line(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True


def configure(level: str) -> None:
    """Log to stderr at ``level``, every message on one line."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLine())
    logging.getLogger("alembic").setLevel(logging.WARNING)
