"""Bearer-key authentication of a client's REST API (`<NAME>_API_KEY`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request

from core.clients import Client
from core.errors import Unauthorized


def require_api_key(client: Client) -> Callable[[Request], None]:
    """A dependency that admits only `Authorization: Bearer <the client's API key>`."""
    expected = client.settings.api_key.get_secret_value() if client.settings.api_key else None

    def check(request: Request) -> None:
        if expected is None:
            raise Unauthorized(f"the API of client {client.name} is disabled: set {client.env_prefix}API_KEY")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("missing Authorization: Bearer <api key>")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Unauthorized("wrong API key")

    return check
