"""Password hashes: argon2id through argon2-cffi, computed off the event loop (each takes tens of milliseconds)."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()  # argon2-cffi's defaults: RFC 9106's low-memory profile
# Verified when the email is unknown, so a login takes as long whether or not the account exists.
_DECOY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash (parameters, salt and hash in one string) of a password."""
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such account) it still spends the same time, then says no."""
    try:
        return _hasher.verify(password_hash or _DECOY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def check_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(check_password, password_hash, password)


def generated_password() -> str:
    """A password of about 128 random bits, printable in one line."""
    return secrets.token_urlsafe(16)
