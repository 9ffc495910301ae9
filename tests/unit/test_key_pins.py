"""Key continuity's rule: which served keys change a pin, and which are a change."""

from __future__ import annotations

from dataclasses import replace

from flamechat.services.directory_view import keys_to_pin
from flamechat.storage.records import KnownUser

BOB = KnownUser("bob", "Bob", "n2", "http://127.0.0.1:2", b"s" * 32, b"b" * 32, False, 0)
FIRST = (b"s" * 32, b"b" * 32)


def test_keys_seen_for_the_first_time_are_pinned_and_are_no_change() -> None:
    assert keys_to_pin({}, [BOB]) == [("bob", FIRST, None)]


def test_the_same_keys_again_change_nothing() -> None:
    assert keys_to_pin({"bob": FIRST}, [BOB]) == []


def test_other_keys_are_pinned_with_the_keys_they_replace() -> None:
    for served in (replace(BOB, sign_key=b"S" * 32), replace(BOB, box_key=b"B" * 32)):
        assert keys_to_pin({"bob": FIRST}, [served]) == [("bob", (served.sign_key, served.box_key), FIRST)]


def test_an_answer_without_keys_leaves_the_pin_so_new_keys_later_still_count_as_a_change() -> None:
    stripped = replace(BOB, sign_key=None, box_key=None)
    assert keys_to_pin({"bob": FIRST}, [stripped]) == []
    forged = replace(BOB, sign_key=b"F" * 32, box_key=b"G" * 32)
    assert keys_to_pin({"bob": FIRST}, [forged]) == [("bob", (b"F" * 32, b"G" * 32), FIRST)]
