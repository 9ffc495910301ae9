"""Errors raised by the crypto recipes. Callers map them to protocol errors."""


class CryptoError(Exception):
    """Base class: the input could not be processed cryptographically."""


class SignatureError(CryptoError):
    """A signature is missing, malformed or does not verify."""


class UndecryptableError(CryptoError):
    """A ciphertext could not be opened with the given key (tampered or wrong key)."""


class MalformedError(CryptoError):
    """An encoded value has the wrong type, size or encoding."""
