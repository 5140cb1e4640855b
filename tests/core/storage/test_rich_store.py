"""The store's part of rich messages, on both databases: a fallback is recorded on a message not sent yet, only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.storage.base import Store
from core.whatsapp.rich import Button, ReplyButtons, rich_message
from tests.core.storage.test_store import DEBOUNCE, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
BUTTONS = ReplyButtons(body="¿Confirmás el turno?", buttons=[Button(title="Sí"), Button(title="No")])


async def test_a_fallback_is_kept_on_a_pending_message_and_never_rewrites_a_sent_one(store: Store):
    conversation = (await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)).conversation_id
    pending = await store.add_operator_message(conversation, rich_message(BUTTONS, "operator"), T0)
    sent = await store.add_operator_message(conversation, rich_message(BUTTONS, "operator"), T0)
    await store.mark_sent(sent.id, "wamid.OUT1", "sent", None)
    fallback = {**(pending.payload or {}), "fallback": {"sent_as": "text", "reason": "rich messages are off"}}

    await store.record_fallback(pending.id, fallback)
    await store.record_fallback(sent.id, fallback)

    kept = await store.get_message(pending.id)
    assert kept is not None and kept.payload == fallback and kept.type == "interactive"
    assert kept.text == "¿Confirmás el turno?\n\n1. Sí\n2. No"
    untouched = await store.get_message(sent.id)
    assert untouched is not None and "fallback" not in (untouched.payload or {})
    assert untouched.payload == {"kind": "buttons", "interactive": BUTTONS.content()}
