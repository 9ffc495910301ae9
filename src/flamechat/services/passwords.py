"""Argon2id password verifiers (argon2-cffi), with a cheap profile for tests."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


def make_hasher(profile: str = "interactive") -> PasswordHasher:
    if profile == "minimal":  # tests and the demo on slow machines only
        return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return PasswordHasher()  # RFC 9106 low-memory profile: Argon2id, t=3, m=64 MiB


def verify_password(hasher: PasswordHasher, verifier: str, password: str) -> bool:
    try:
        return hasher.verify(verifier, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
