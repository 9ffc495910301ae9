"""One exception hierarchy inside, one error shape outside.

Every error any Flame Chat API returns has the body
``{"error": {"code": "<machine code>", "message": "<for people>", "field": ...}}``
and the HTTP status of its class. Codes are stable: clients branch on them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FlameError(Exception):
    """Base of every error that crosses an API boundary."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(FlameError):
    """Malformed JSON or a field that fails validation."""

    status = 422
    code = "invalid_request"


class InvalidCredentials(FlameError):
    """Wrong username or password."""

    status = 401
    code = "invalid_credentials"


class NotAuthenticated(FlameError):
    """No valid session cookie."""

    status = 401
    code = "not_authenticated"


class CsrfFailed(FlameError):
    """A state-changing request without the session's CSRF token."""

    status = 403
    code = "csrf_failed"


class BadNodeSignature(FlameError):
    """A federation or directory request is unsigned, badly signed or replayed."""

    status = 401
    code = "bad_signature"


class UnknownNode(FlameError):
    """The request is signed by a node nobody registered."""

    status = 401
    code = "unknown_node"


class ReplayedRequest(FlameError):
    """The same signed request was seen before, or its timestamp is out of window."""

    status = 401
    code = "replayed_request"


class EnvelopeRejected(FlameError):
    """An envelope's sender signature fails or its content does not open."""

    status = 403
    code = "envelope_rejected"


class Forbidden(FlameError):
    """Authenticated, but not allowed to do this."""

    status = 403
    code = "forbidden"


class WrongHomeNode(FlameError):
    """The user lives on another node; log in there."""

    status = 403
    code = "wrong_home_node"


class UnknownUser(FlameError):
    status = 404
    code = "unknown_user"


class NotFound(FlameError):
    status = 404
    code = "not_found"


class Conflict(FlameError):
    status = 409
    code = "conflict"


class RecipientNotReady(FlameError):
    """The recipient has never logged in, so has no published keys yet."""

    status = 409
    code = "recipient_not_ready"


class KeysChanged(Conflict):
    """The recipient's keys changed since the sender last wrote with them, unconfirmed."""

    code = "keys_changed"


class LocalCredentialsMismatch(FlameError):
    """The directory accepted a password this node's cached verifier refuses."""

    status = 409
    code = "local_credentials_mismatch"


class PayloadTooLarge(FlameError):
    status = 413
    code = "payload_too_large"


class MessageTooLarge(PayloadTooLarge):
    code = "message_too_large"


class FileTooLarge(PayloadTooLarge):
    """A file over the node's maximum file size."""

    code = "file_too_large"


class QuotaExceeded(FlameError):
    """The user's file storage on their node is full."""

    status = 507
    code = "quota_exceeded"


class UploadOffsetMismatch(Conflict):
    """An upload part does not start where the node's copy ends."""

    code = "upload_offset_mismatch"


class FileNotReady(Conflict):
    """The file's data has not arrived (or was refused)."""

    code = "file_not_ready"


class FileCorrupted(FlameError):
    """A blob fails its authentication or hash: it is never served."""

    status = 422
    code = "file_corrupted"


class RangeNotSatisfiable(FlameError):
    status = 416
    code = "range_not_satisfiable"


class RateLimited(FlameError):
    status = 429
    code = "rate_limited"


class DirectoryUnavailable(FlameError):
    """The directory could not be reached and nothing cached can answer."""

    status = 503
    code = "directory_unavailable"


class PeerUnavailable(FlameError):
    status = 503
    code = "peer_unavailable"


class ServiceUnavailable(FlameError):
    status = 503
    code = "unavailable"


class StorageBusy(ServiceUnavailable):
    """The node's or directory's database stayed locked past its busy timeout."""

    code = "storage_busy"


ALL_ERRORS: tuple[type[FlameError], ...] = (
    FlameError,
    InvalidRequest,
    InvalidCredentials,
    NotAuthenticated,
    CsrfFailed,
    BadNodeSignature,
    UnknownNode,
    ReplayedRequest,
    EnvelopeRejected,
    Forbidden,
    WrongHomeNode,
    UnknownUser,
    NotFound,
    Conflict,
    RecipientNotReady,
    KeysChanged,
    LocalCredentialsMismatch,
    PayloadTooLarge,
    MessageTooLarge,
    FileTooLarge,
    QuotaExceeded,
    UploadOffsetMismatch,
    FileNotReady,
    FileCorrupted,
    RangeNotSatisfiable,
    RateLimited,
    DirectoryUnavailable,
    PeerUnavailable,
    ServiceUnavailable,
    StorageBusy,
)
