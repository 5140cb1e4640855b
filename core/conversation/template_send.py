"""Sending an approved template to one conversation: checked against the stored template, then the outbox's path."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from core.clients import Client
from core.conversation.outbox import Outbox
from core.conversation.takeover import SendRefused
from core.errors import AppError, NotFound
from core.storage.base import OperatorStore, TemplateStore
from core.storage.records import NewMessage, Role, StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.templates import APPROVED, TemplateError

log = logging.getLogger("core.templates")


class TemplateRefused(AppError):
    """A template send that does not fit the client's stored templates; the message says which part."""

    status_code = 422


async def template_message(templates: TemplateStore, client: Client, name: str, language: str,
                           parameters: Sequence[str] | Mapping[str, str], *, role: Role = "operator") -> NewMessage:
    """The outbound message (pending) of a template send, or TemplateRefused naming what does not fit."""
    template = await templates.get_template(client.name, name, language)
    if template is None:
        known = [t.language for t in await templates.list_templates(client.name) if t.name == name]
        if known:
            raise TemplateRefused(f"template {name!r} has no language {language!r} (it has: {', '.join(known)})")
        raise TemplateRefused(f"client {client.name} has no template {name!r} (GET …/templates lists them)")
    if template.status != APPROVED:
        raise TemplateRefused(f"template {name!r} ({language}) is {template.status}: only APPROVED templates can be sent")
    try:
        bound = template.bind(parameters)
    except TemplateError as error:
        raise TemplateRefused(str(error)) from error
    # The text is what people read in the timeline; the payload is what the outbox sends (and would resend).
    return NewMessage(direction="out", role=role, type="template", text=template.render(bound),
                      payload={"template": template.message(bound)}, status="pending")


async def send_template(store: OperatorStore, templates: TemplateStore, outbox: Outbox, client: Client,
                        sender: WhatsAppSender, conversation_id: int, name: str, language: str,
                        parameters: Sequence[str] | Mapping[str, str], now: datetime) -> StoredMessage:
    """Send an approved template to a conversation (whatever its 24 h window) and store it as an operator's message."""
    conversation = await store.get_conversation(client.name, conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id} for client {client.name}")
    message = await template_message(templates, client, name, language, parameters)
    stored = await store.add_operator_message(conversation.id, message, now)
    delivered = await outbox.deliver(client, sender, conversation, [stored])
    sent = await store.get_message(stored.id) or stored
    if not delivered:
        raise SendRefused(f"WhatsApp did not accept the template: {(sent.error or {}).get('message', 'unknown error')}")
    log.info("template.sent", extra={"client": client.name, "conversation": conversation.id, "template": name,
                                     "language": language})
    return sent
