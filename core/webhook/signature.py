"""X-Hub-Signature-256: which of the configured app secrets signed the raw body."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value Meta sends for `body` signed with `secret`."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def matching_secret(body: bytes, header: str | None, secrets: Iterable[str]) -> str | None:
    """The secret whose HMAC of the exact raw bytes equals the header, or None."""
    if not header or not header.startswith(PREFIX):
        return None
    given = header.strip().encode()
    found = None
    for secret in secrets:
        # Compare against every secret (no early exit) so timing does not tell which one is close.
        if hmac.compare_digest(sign(secret, body).encode(), given):
            found = secret
    return found
