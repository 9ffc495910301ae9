"""Safety numbers: 60 digits two people compare to know they hold each other's keys.

The construction is Signal's numeric fingerprint (version 0), with both of a
user's public keys as the identity, since a node seals to the X25519 key and
verifies with the Ed25519 key, and a directory could substitute either:

* for each party, ``h = SHA-512(version || identity || username)`` then
  ``h = SHA-512(h || identity)`` 5,200 times in all, where ``version`` is
  ``b"\\x00\\x00"`` and ``identity = sign_key || box_key`` (64 bytes);
* the first 30 bytes of ``h`` give six groups of five digits: each 5-byte
  big-endian integer modulo 100,000, zero-padded;
* the two parties' 30 digits are joined lower first (as strings), so both
  people see the same 60 digits, in twelve groups.

The iterations make finding another key pair with the same digits costly;
SHA-512 is the only primitive. Pure: no I/O.
"""

from __future__ import annotations

import hashlib

from flamechat.crypto.errors import MalformedError

VERSION = b"\x00\x00"
ITERATIONS = 5200
KEY_SIZE = 32


def _party_digits(username: str, sign_key: bytes, box_key: bytes) -> str:
    if len(sign_key) != KEY_SIZE or len(box_key) != KEY_SIZE:
        raise MalformedError("a safety number takes 32-byte public keys")
    identity = sign_key + box_key
    digest = hashlib.sha512(VERSION + identity + username.encode()).digest()
    for _ in range(ITERATIONS - 1):
        digest = hashlib.sha512(digest + identity).digest()
    return "".join(f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))


def safety_number(
    mine: tuple[str, bytes, bytes],
    theirs: tuple[str, bytes, bytes],
) -> str:
    """The 60 digits, as twelve space-separated groups of five, for parties
    given as ``(username, sign_key, box_key)``; the same whichever comes first."""
    halves = sorted((_party_digits(*mine), _party_digits(*theirs)))
    digits = "".join(halves)
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))
