"""Bearer-key authentication of a client's REST API (`<NAME>_API_KEY`)."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable

from fastapi import Request

from core.clients import Client
from core.errors import Unauthorized

log = logging.getLogger("core.api.auth")

MISSING_KEY = "missing Authorization: Bearer <api key>"
WRONG_KEY = "wrong API key"


def require_api_key(client: Client) -> Callable[[Request], None]:
    """A dependency that admits only `Authorization: Bearer <the client's API key>`.

    A client without a key answers exactly as one with a key does to a wrong one, so an outsider cannot tell which
    clients have an open API; the log says why, with the client's name."""
    configured = client.settings.api_key.get_secret_value() if client.settings.api_key else None
    # A disabled API compares against a random key nobody holds: the same path, the same answer.
    expected = (configured or secrets.token_urlsafe(32)).encode()
    disabled = f"the API is disabled: set {client.env_prefix}API_KEY"

    def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            _refused(client, disabled if configured is None else "no bearer key", configured is None)
            raise Unauthorized(MISSING_KEY)
        if not hmac.compare_digest(given.encode(), expected) or configured is None:
            _refused(client, disabled if configured is None else "wrong key", True)
            raise Unauthorized(WRONG_KEY)

    return check


def _refused(client: Client, reason: str, loud: bool) -> None:
    log.log(logging.WARNING if loud else logging.INFO, "api.unauthorized", extra={"client": client.name,
                                                                                  "reason": reason})
