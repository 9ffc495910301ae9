"""What a received ``amend`` envelope may say (services/amends.py::parse_amend):
anything a sending node could not have produced is dropped, never applied."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.services.amends import parse_amend
from flamechat.services.messaging import MAX_BODY_BYTES
from tests.unit.support import PROPERTY

ID = "0190c1de-7a00-7000-8000-000000000001"


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ({"message_id": ID, "text": "new words"}, (ID, "new words")),
        ({"message_id": ID, "deleted": True}, (ID, None)),
        ({"message_id": ID, "deleted": True, "text": "ignored"}, (ID, None)),  # a deletion wins
        ({"message_id": ID, "deleted": "yes"}, (None, None)),
        ({"message_id": ID}, (None, None)),
        ({"message_id": ID, "text": "   "}, (None, None)),
        ({"message_id": ID, "text": "x" * (MAX_BODY_BYTES + 1)}, (None, None)),
        ({"message_id": "", "text": "x"}, (None, None)),
        ({"message_id": "x" * 37, "text": "x"}, (None, None)),
        ({"message_id": 7, "text": "x"}, (None, None)),
        ({"text": "x"}, (None, None)),
    ],
)
def test_only_a_well_formed_amend_is_taken(
    body: dict[str, Any], parsed: tuple[str | None, str | None]
) -> None:
    assert parse_amend(body) == parsed


@PROPERTY
@given(
    st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers() | st.text(max_size=40))
)
def test_any_body_is_either_refused_or_names_a_bounded_message(body: dict[str, Any]) -> None:
    target, text = parse_amend(body)
    if target is None:
        assert text is None
    else:
        assert 0 < len(target) <= 36
        assert text is None or text.strip()
