"""HTTP byte ranges (RFC 9110 section 14): the one form browsers send for media.

Pure: parse a ``Range`` header against a known size. Only a single range is
honoured; several ranges, or a header that does not parse, mean "the whole
thing" (which RFC 9110 allows a server to answer with 200).
"""

from __future__ import annotations

import re

from flamechat.protocol import errors

_SINGLE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, ``None`` for the whole body.

    Raises :class:`errors.RangeNotSatisfiable` for a range wholly past the end.
    """
    if header is None or size == 0:
        return None
    match = _SINGLE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # a suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise errors.RangeNotSatisfiable(f"the body is {size} bytes", size=size)
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise errors.RangeNotSatisfiable(f"the body is {size} bytes", size=size)
    return start, end
