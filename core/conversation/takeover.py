"""Human takeover: an operator answers instead of the bot, and the bot takes back idle conversations."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from core.clients import Client, ClientRegistry
from core.conversation.outbox import Outbox
from core.conversation.window import is_within_window
from core.errors import AppError, NotFound
from core.storage.base import OperatorStore
from core.clock import Clock
from core.storage.records import Mode, NewMessage, StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.rich import RichKind, rich_message

log = logging.getLogger("core.takeover")


class OutsideWindow(AppError):
    status_code = 422


class SendRefused(AppError):
    status_code = 502


async def set_mode(store: OperatorStore, client: Client, conversation_id: int, mode: Mode, now: datetime) -> None:
    """Hand a conversation to an operator or back to the bot."""
    if await store.set_mode(client.name, conversation_id, mode, now) is None:
        raise NotFound(f"no conversation {conversation_id} for client {client.name}")
    log.info("conversation.taken_over" if mode == "human" else "conversation.released",
             extra={"client": client.name, "conversation": conversation_id})


async def send_operator_message(store: OperatorStore, outbox: Outbox, client: Client, sender: WhatsAppSender,
                                conversation_id: int, text: str, now: datetime) -> StoredMessage:
    """Send an operator's text through WhatsApp and store it with role operator; refused outside the 24 h window."""
    message = NewMessage(direction="out", role="operator", type="text", text=text, status="pending")
    return await send_as_operator(store, outbox, client, sender, conversation_id, message, now)


async def send_operator_rich(store: OperatorStore, outbox: Outbox, client: Client, sender: WhatsAppSender,
                             conversation_id: int, rich: RichKind, now: datetime) -> StoredMessage:
    """Send an operator's buttons, list, image, document or location, under the same rules as a text."""
    return await send_as_operator(store, outbox, client, sender, conversation_id, rich_message(rich, "operator"), now)


async def send_as_operator(store: OperatorStore, outbox: Outbox, client: Client, sender: WhatsAppSender,
                           conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
    """Store an operator's message and send it; refused outside the 24 h window, SendRefused when WhatsApp refuses."""
    conversation = await store.get_conversation(client.name, conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id} for client {client.name}")
    if not is_within_window(conversation.last_inbound_at, now):
        hint = await outbox.reopen_hint(client)
        raise OutsideWindow("the user last wrote more than 24 hours ago: WhatsApp only accepts a template now"
                            + (f" ({hint}; POST …/template sends one)" if hint else ""))
    stored = await store.add_operator_message(conversation.id, message, now)
    delivered = await outbox.deliver(client, sender, conversation, [stored])
    sent = await store.get_message(stored.id) or stored
    if not delivered:
        raise SendRefused(f"WhatsApp did not accept the message: {(sent.error or {}).get('message', 'unknown error')}")
    return sent


async def release_idle_takeovers(store: OperatorStore, registry: ClientRegistry, clock: Clock) -> None:
    """Give back to the bot every conversation whose operator has been idle for the client's HUMAN_IDLE_MINUTES."""
    now = clock.now()
    for client in registry:
        released = await store.release_idle_takeovers(
            client.name, now - timedelta(minutes=client.settings.human_idle_minutes))
        if released:
            log.info("conversation.idle_takeovers_released", extra={"client": client.name, "count": released})
