"""Safety numbers: the same digits on both sides, different for any other key."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.crypto.errors import MalformedError
from flamechat.crypto.safety import safety_number
from tests.unit.support import PROPERTY

KEY = st.binary(min_size=32, max_size=32)
ALICE = ("alice", b"\x01" * 32, b"\x02" * 32)
BOB = ("bob", b"\x03" * 32, b"\x04" * 32)

# Pinned: the digits people compare may never change for the same keys
# between releases, or a routine upgrade would look like an attack. (Computed
# apart from the code, step by step from the construction in docs/protocol.md.)
KNOWN = "31088 32260 00869 34895 00068 95866 53619 84285 24439 73111 75739 17077"


def test_the_digits_for_known_keys() -> None:
    assert safety_number(ALICE, BOB) == KNOWN


def test_twelve_groups_of_five_digits() -> None:
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", safety_number(ALICE, BOB))


@PROPERTY
@given(KEY, KEY, KEY, KEY)
def test_both_sides_see_the_same_digits(a_sign: bytes, a_box: bytes, b_sign: bytes, b_box: bytes) -> None:
    alice, bob = ("alice", a_sign, a_box), ("bob", b_sign, b_box)
    assert safety_number(alice, bob) == safety_number(bob, alice)


@pytest.mark.parametrize(
    "substituted",
    [("bob", b"\x05" * 32, BOB[2]), ("bob", BOB[1], b"\x05" * 32), ("mallory", BOB[1], BOB[2])],
    ids=["signing key", "box key", "name"],
)
def test_any_other_key_or_name_gives_other_digits(substituted: tuple[str, bytes, bytes]) -> None:
    assert safety_number(ALICE, substituted) != safety_number(ALICE, BOB)


def test_keys_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(MalformedError):
        safety_number(ALICE, ("bob", b"short", BOB[2]))
