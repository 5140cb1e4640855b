"""POST /webhook served ahead of the middleware stack still never answers a failure with a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.webhook.router import serve

pytestmark = pytest.mark.anyio


async def test_an_unexpected_failure_is_a_503_meta_retries_never_a_500(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict[str, Any]] = []
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # No services in the request's state: the handler itself fails, as an unforeseen bug would.
    scope = {"type": "http", "method": "POST", "path": "/webhook", "headers": [], "query_string": b"", "state": {}}
    await serve(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    assert start["status"] == 503
    answer = json.loads(b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body"))
    assert "retry later" in answer["detail"]
    assert any(record.message == "webhook.failed" for record in caplog.records)
