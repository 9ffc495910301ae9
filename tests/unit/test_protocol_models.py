"""Wire models, identifiers, versions and the error table (protocol/*).

Clients branch on error codes, so the table of codes is pinned here: renaming
a code, changing its HTTP status or reusing it is a protocol change and must
be made on purpose (and in docs/protocol.md), never by accident.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import flamechat
from flamechat.protocol import errors, models
from flamechat.protocol.ids import is_username, is_uuid, new_id
from flamechat.protocol.versions import FEATURES, PROTOCOL_VERSIONS, NoCommonVersion, negotiate
from tests.unit.support import PROPERTY, usernames

KEY = "A" * 43 + "="  # 32 bytes in base64
SIG = "A" * 86 + "=="  # 64 bytes in base64
ENVELOPE_ID = "0190a5e4-8c1b-7a3e-9f00-123456789abc"
NODE_ID = "n" + "a" * 24

ENVELOPE = {
    "v": 1,
    "id": ENVELOPE_ID,
    "sender": "alice",
    "recipient": "bob",
    "sent_at": 1_800_000_000_000,
    "ciphertext": "AAAA",
    "signature": SIG,
}

# One valid example of every model that accepts input from outside.
VALID: dict[type[BaseModel], dict[str, Any]] = {
    models.EnvelopeWire: ENVELOPE,
    models.RelayDeposit: {"recipient_node": NODE_ID, "envelope": ENVELOPE},
    models.EnvelopeBatch: {"envelopes": [ENVELOPE]},
    models.MarkVerified: {"safety_number": " ".join(["12345"] * 12)},
    models.RelayAcks: {"seqs": [1, 2, 3]},
    models.NodeRegistration: {"url": "http://node.example:8701", "public_key": KEY},
    models.LoginCheck: {"username": "alice", "password": "pw"},
    models.PublishKeys: {"sign_key": KEY, "box_key": KEY, "binding_signature": SIG},
    models.PresenceItem: {"username": "alice", "status": "away", "status_text": "lunch"},
    models.PresenceReport: {"users": [{"username": "alice"}]},
    models.UserCard: {"display_name": "Alice"},
    models.LoginRequest: {"username": "alice", "password": "pw"},
    models.MarkRead: {"up_to": ENVELOPE_ID},
    models.SendMessage: {"body": "hi"},
    models.EditMessage: {"body": "hi again"},
    models.SetStatus: {"status": "busy", "status_text": "in a meeting"},
    models.EditProfile: {"display_name": "Alice", "about": "hello"},
    models.StartUpload: {"id": ENVELOPE_ID, "name": "report.pdf", "size": 1234},
}


def strict_models() -> list[type[BaseModel]]:
    return [
        cls
        for _name, cls in inspect.getmembers(models, inspect.isclass)
        if issubclass(cls, models.Strict) and cls is not models.Strict
    ]


def test_every_input_model_forbids_extra_fields() -> None:
    for cls in strict_models():
        assert cls.model_config.get("extra") == "forbid", cls.__name__


def test_every_input_model_has_a_valid_example_here() -> None:
    missing = {cls.__name__ for cls in strict_models()} - {cls.__name__ for cls in VALID}
    assert not missing, f"add a valid example to VALID for {sorted(missing)}"


@pytest.mark.parametrize("cls", list(VALID), ids=lambda cls: cls.__name__)
def test_valid_example_passes_and_an_extra_field_is_refused(cls: type[BaseModel]) -> None:
    cls.model_validate(VALID[cls])
    with pytest.raises(ValidationError) as caught:
        cls.model_validate({**VALID[cls], "is_admin": True})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("is_admin",)


def test_nested_extra_field_in_an_envelope_is_refused() -> None:
    with pytest.raises(ValidationError):
        models.RelayDeposit.model_validate(
            {"recipient_node": NODE_ID, "envelope": {**ENVELOPE, "plaintext": "oops"}}
        )


@pytest.mark.parametrize(
    "bad",
    ["a", "1alice", "_alice", "Alice", "al ice", "alice\n", "ali/ce", "alïce", "a" * 33, "", "alice@x"],
)
def test_malformed_usernames_are_refused(bad: str) -> None:
    assert not is_username(bad)
    with pytest.raises(ValidationError):
        models.LoginRequest.model_validate({"username": bad, "password": "pw"})
    with pytest.raises(ValidationError):
        models.EnvelopeWire.model_validate({**ENVELOPE, "sender": bad})


@PROPERTY
@given(name=usernames)
def test_valid_usernames_pass_both_checks(name: str) -> None:
    assert is_username(name)
    models.LoginRequest.model_validate({"username": name, "password": "pw"})


@PROPERTY
@given(text=st.text(max_size=40))
def test_the_model_pattern_and_is_username_agree(text: str) -> None:
    try:
        models.LoginRequest.model_validate({"username": text, "password": "pw"})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == is_username(text)


@pytest.mark.parametrize(
    "bad",
    [
        ENVELOPE_ID.upper(),
        ENVELOPE_ID[:-1],
        ENVELOPE_ID + "0",
        ENVELOPE_ID.replace("-", ""),
        "{" + ENVELOPE_ID + "}",
        "../../etc/passwd",
        "",
    ],
)
def test_malformed_envelope_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        models.EnvelopeWire.model_validate({**ENVELOPE, "id": bad})
    with pytest.raises(ValidationError):
        models.MarkRead.model_validate({"up_to": bad})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("sent_at", -1),
        ("sent_at", 2**53 + 1),
        ("signature", SIG[:-4]),
        ("ciphertext", "A" * 200_001),
    ],
)
def test_envelope_field_bounds(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        models.EnvelopeWire.model_validate({**ENVELOPE, field: value})


@pytest.mark.parametrize(
    ("cls", "change"),
    [
        (models.RelayDeposit, {"recipient_node": "nABC"}),
        (models.RelayDeposit, {"recipient_node": "n" + "a" * 25}),
        (models.NodeRegistration, {"url": "ftp://node.example"}),
        (models.NodeRegistration, {"public_key": KEY[:-1]}),
        (models.SetStatus, {"status": "offline"}),
        (models.SetStatus, {"status_text": "x" * 141}),
        (models.EditProfile, {"display_name": ""}),
        (models.EditProfile, {"about": "x" * 2001}),
        (models.EditMessage, {"body": "  \n "}),
        (models.SendMessage, {"body": ""}),
        (models.RelayAcks, {"seqs": list(range(1001))}),
        (models.LoginRequest, {"password": ""}),
        (models.LoginRequest, {"password": "x" * 1025}),
        (models.StartUpload, {"size": -1}),
        (models.StartUpload, {"name": ""}),
        (models.StartUpload, {"id": ENVELOPE_ID.upper()}),
    ],
)
def test_field_limits_are_enforced(cls: type[BaseModel], change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls.model_validate({**VALID[cls], **change})


# --- ids and versions ----------------------------------------------------------------------


def test_new_ids_are_time_ordered_uuid7() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(is_uuid(i) for i in ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == len(ids)
    # Milliseconds lead the id, so ids made later never sort before earlier ones' timestamps.
    stamps = [int(i.replace("-", "")[:12], 16) for i in ids]
    assert stamps == sorted(stamps)
    models.MarkRead.model_validate({"up_to": ids[0]})


@pytest.mark.parametrize(
    "text",
    [
        ENVELOPE_ID.upper(),
        "nope",
        "",
        ENVELOPE_ID.replace("-", ""),
        "{" + ENVELOPE_ID + "}",
        "urn:uuid:" + ENVELOPE_ID,
    ],
)
def test_is_uuid_wants_the_canonical_lower_case_form(text: str) -> None:
    assert not is_uuid(text)


@PROPERTY
@given(value=st.uuids())
def test_is_uuid_agrees_with_the_envelope_id_schema(value: uuid.UUID) -> None:
    for text in (str(value), str(value).upper()):
        try:
            models.MarkRead.model_validate({"up_to": text})
            schema_ok = True
        except ValidationError:
            schema_ok = False
        assert is_uuid(text) == schema_ok


def test_negotiation_picks_the_newest_common_version() -> None:
    assert negotiate(["1", "2", "3"], ["2", "3", "4"]) == "3"
    assert negotiate(["10", "9"], ["9", "10"]) == "10"  # numeric, not lexical
    assert negotiate(PROTOCOL_VERSIONS, PROTOCOL_VERSIONS) == PROTOCOL_VERSIONS[0]
    with pytest.raises(NoCommonVersion):
        negotiate(["1"], ["2"])
    with pytest.raises(NoCommonVersion):
        negotiate(["1"], ["x", "1.0"])


def test_this_node_speaks_version_1_and_its_features() -> None:
    assert "1" in PROTOCOL_VERSIONS
    assert {"envelopes", "receipts", "relay", "presence"} <= set(FEATURES)


# --- errors ------------------------------------------------------------------------------------

# The stable table: code -> HTTP status. Change it only together with docs/protocol.md.
PINNED_CODES = {
    "bad_request": 400,
    "invalid_request": 422,
    "invalid_credentials": 401,
    "not_authenticated": 401,
    "csrf_failed": 403,
    "bad_signature": 401,
    "unknown_node": 401,
    "replayed_request": 401,
    "envelope_rejected": 403,
    "forbidden": 403,
    "wrong_home_node": 403,
    "node_blocked": 403,
    "relay_disabled": 403,
    "unknown_user": 404,
    "not_found": 404,
    "conflict": 409,
    "recipient_not_ready": 409,
    "keys_changed": 409,
    "local_credentials_mismatch": 409,
    "user_blocked": 409,
    "message_not_amendable": 409,
    "upload_offset_mismatch": 409,
    "file_not_ready": 409,
    "payload_too_large": 413,
    "message_too_large": 413,
    "file_too_large": 413,
    "range_not_satisfiable": 416,
    "file_corrupted": 422,
    "rate_limited": 429,
    "directory_unavailable": 503,
    "peer_unavailable": 503,
    "unavailable": 503,
    "storage_busy": 503,
    "relay_quota_exceeded": 507,
    "quota_exceeded": 507,
}


def _all_error_classes() -> list[type[errors.FlameError]]:
    """Every FlameError subclass anywhere in the package (services define a few)."""
    for info in pkgutil.walk_packages(flamechat.__path__, "flamechat."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue  # Alembic env modules run on import; __main__ runs the CLI
        importlib.import_module(info.name)
    found: list[type[errors.FlameError]] = [errors.FlameError]
    pending = [errors.FlameError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return [cls for cls in found if cls.__module__.startswith("flamechat.")]


def test_every_error_code_is_unique() -> None:
    seen: dict[str, str] = {}
    for cls in _all_error_classes():
        if "code" not in vars(cls):
            # An internal marker subclass (e.g. httpapi.limits._TooLarge) is the same error.
            assert cls.status == cls.__mro__[1].status  # type: ignore[attr-defined]
            continue
        assert cls.code not in seen, f"{cls.__name__} reuses {cls.code!r} of {seen.get(cls.code)}"
        seen[cls.code] = cls.__name__


def test_error_codes_and_statuses_are_pinned() -> None:
    table = {cls.code: cls.status for cls in _all_error_classes()}
    assert table == PINNED_CODES


def test_every_protocol_error_is_listed_in_all_errors() -> None:
    defined = {
        cls
        for _name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.FlameError) and cls.__module__ == errors.__name__
    }
    assert defined == set(errors.ALL_ERRORS)


@pytest.mark.parametrize("cls", list(errors.ALL_ERRORS), ids=lambda cls: cls.__name__)
def test_error_body_has_the_one_shape(cls: type[errors.FlameError]) -> None:
    assert 400 <= cls.status < 600
    body = cls("something went wrong").to_body()
    assert body == {"error": {"code": cls.code, "message": "something went wrong"}}
    models.ErrorBody.model_validate(body)
    detailed = cls("bad", field="body", retry_after=3).to_body()
    assert detailed == {
        "error": {"code": cls.code, "message": "bad", "field": "body", "details": {"retry_after": 3}}
    }


def test_subclasses_keep_their_family_status() -> None:
    assert issubclass(errors.MessageTooLarge, errors.PayloadTooLarge)
    assert errors.MessageTooLarge.status == 413
    assert errors.MessageTooLarge("x").code == "message_too_large"
