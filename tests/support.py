"""Helpers for tests: build Meta-shaped deliveries, sign them, and poll for outcomes with a bound."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from core.webhook.signature import sign

T = TypeVar("T")

WEBHOOK_DATA = Path(__file__).parent / "data" / "webhooks"
_wamids = itertools.count(1)


def wait_for(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def new_wamid() -> str:
    return f"wamid.TEST{next(_wamids):08d}"


def text_delivery(waba_id: str, phone_number_id: str, wa_id: str, body: str, *, wamid: str | None = None,
                  timestamp: int | None = None, name: str = "Ana") -> dict[str, Any]:
    """A `messages` delivery with one text message, as Meta sends it."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491100000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid or new_wamid(), "timestamp": str(timestamp or int(time.time())),
                          "type": "text", "text": {"body": body}}],
        }}]}],
    }


def load_delivery(name: str, waba_id: str, phone_number_id: str, *, replayed_at: datetime | None = None
                  ) -> dict[str, Any]:
    """A recorded delivery from tests/data/webhooks with the ids of a test client filled in.

    With `replayed_at`, its times are moved so that its newest message or status happened at that instant."""
    text = (WEBHOOK_DATA / name).read_text()
    text = text.replace("{{WABA_ID}}", waba_id).replace("{{PHONE_NUMBER_ID}}", phone_number_id)
    document = json.loads(text.replace("{{DISPLAY_PHONE_NUMBER}}", "5491100000000"))
    return document if replayed_at is None else replay(document, replayed_at)


# Meta's Unix-seconds fields: messages' and statuses' `timestamp`, management changes' `entry[].time`, and a
# conversation's `expiration_timestamp`; strings, except `time`.
_TIME_KEYS = ("timestamp", "time", "expiration_timestamp")


def replay(document: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A copy of a recorded delivery as if sent now: every time shifted by one amount, so their spacing is kept."""
    times = list(_times(document))
    if not times:
        return document
    shift = int(at.timestamp()) - max(times)
    return _shifted(document, shift)


def _times(node: Any) -> Iterator[int]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _TIME_KEYS and str(value).isdigit() and key != "expiration_timestamp":
                yield int(value)
            else:
                yield from _times(value)
    elif isinstance(node, list):
        for item in node:
            yield from _times(item)


def _shifted(node: Any, shift: int) -> Any:
    if isinstance(node, dict):
        return {key: (type(value)(int(value) + shift) if key in _TIME_KEYS and str(value).isdigit() else
                      _shifted(value, shift)) for key, value in node.items()}
    if isinstance(node, list):
        return [_shifted(item, shift) for item in node]
    return node


def signed(body: dict[str, Any] | bytes, secret: str | None) -> tuple[bytes, dict[str, str]]:
    """The raw bytes and headers of a delivery signed with `secret` (unsigned when None)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, raw)
    return raw, headers
