"""Coexistence: what staff wrote from the WhatsApp Business app, as Meta echoes it (`smb_message_echoes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from core.webhook.events import OtherChange, describe, parse_timestamp
from core.webhook.payloads import Message

ECHOES_FIELD = "smb_message_echoes"


@dataclass(frozen=True)
class EchoMessage:
    """A message the business sent from the Business app to a person: an operator's message in the timeline."""

    phone_number_id: str
    wamid: str
    user_key: str
    wa_id: str | None
    user_id: str | None
    type: str
    text: str
    wa_timestamp: datetime | None
    payload: dict[str, Any] = field(repr=False)


def parse_echoes(change: OtherChange) -> tuple[list[EchoMessage], list[str]]:
    """The echoes of a `smb_message_echoes` change, and a reason for each item that cannot be kept."""
    echoes: list[EchoMessage] = []
    problems: list[str] = []
    items = change.value.get("message_echoes")
    if not change.phone_number_id:
        return [], ["the change names no phone_number_id"]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            problems.append("an echo that is not an object")
            continue
        try:
            message = Message.model_validate(item)
        except ValidationError:
            problems.append("an echo without an id")
            continue
        wa_id = item.get("to") if isinstance(item.get("to"), str) and item.get("to") else None
        user_id = item.get("to_user_id") if isinstance(item.get("to_user_id"), str) and item.get("to_user_id") else None
        user_key = wa_id or user_id
        if user_key is None:
            problems.append(f"echo {message.id} names no recipient (neither to nor to_user_id)")
            continue
        echoes.append(EchoMessage(change.phone_number_id, message.id, user_key, wa_id, user_id, message.type,
                                  describe(message), parse_timestamp(message.timestamp), item))
    return echoes, problems
