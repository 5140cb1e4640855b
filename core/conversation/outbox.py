"""Sending stored outbound messages: the 24 h window, pacing, and Graph errors handled by code."""

from __future__ import annotations

import logging

from core.clients import Client
from core.clock import Clock
from core.conversation.window import OUTSIDE_WINDOW_REASON, is_within_window, reopen_hint
from core.metrics import Metrics
from core.retry import RetryPolicy
from core.storage.base import OutboxStore, StoreUnavailable, TemplateStore
from core.storage.records import Conversation, StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.pacing import Pacer
from core.whatsapp.rich import RICH_TYPES

log = logging.getLogger("core.outbox")

OUTSIDE_WINDOW = 131047
TOKEN_INVALID = 190
# Meta's refusals of a rich message that its text can still get past: a value it does not take (131009), a recipient
# whose app cannot show it (131026), a type the number cannot send (131051).
RICH_FALLBACK_CODES = frozenset({131009, 131026, 131051})
# A part WhatsApp accepted waits this long for a store that is down to record it (a turn's lease ends it sooner).
RECORDING = RetryPolicy(attempts=1000, base_seconds=0.1, max_wait_seconds=2.0, deadline_seconds=60.0)


class Outbox:
    """Sends a conversation's stored outbound messages in order and records each outcome."""

    def __init__(self, store: OutboxStore, pacer: Pacer, retry: RetryPolicy, clock: Clock,
                 templates: TemplateStore | None = None, metrics: Metrics | None = None) -> None:
        self._store = store
        self._templates = templates  # to name, when a window is closed, the templates that could reopen it
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._pacer = pacer
        self._retry = retry

    async def deliver(self, client: Client, sender: WhatsAppSender, conversation: Conversation,
                      messages: list[StoredMessage]) -> bool:
        """Send each message; after a refusal the rest are marked failed. True when all were sent."""
        fields = {"client": client.name, "conversation": conversation.id}
        sandbox = client.send_mode == "sandbox"
        for index, message in enumerate(messages):
            # A template is what WhatsApp accepts outside the window: only free-form messages wait for the person.
            if message.type != "template" and not is_within_window(conversation.last_inbound_at, self._clock.now()):
                error = {"code": OUTSIDE_WINDOW, "title": "outside the 24 h window",
                         "message": "free-form messages need the user to have written in the last 24 hours"}
                log.warning("whatsapp.outside_window", extra=fields)
                await self._fail_rest(client, messages[index:], error)
                await self.flag_window_closed(client, conversation.id)
                return False
            try:
                wamid = await self._send_part(client, sender, conversation, message)
            except WhatsAppError as error:
                await self._refused(client, conversation, error, fields)
                await self._store.mark_sent(message.id, None, "failed", error.as_record())
                self._metrics.sent(client.name, "failed")
                await self._fail_rest(client, messages[index + 1:], {"message": "not sent: an earlier part was refused"})
                return False
            await self._recorded(message, wamid, "sandbox" if sandbox else "sent")
            self._metrics.sent(client.name, "sandbox" if sandbox else "sent")
        return True

    async def _recorded(self, message: StoredMessage, wamid: str, status: str) -> None:
        """Record a part WhatsApp accepted, waiting out a store that is down for a moment: left `pending`, it would
        be sent again by the conversation's next holder."""
        async for attempt in RECORDING.retrying(lambda error: isinstance(error, StoreUnavailable)):
            with attempt:
                await self._store.mark_sent(message.id, wamid, status, None)

    async def reopen_hint(self, client: Client) -> str | None:
        """The client's approved templates that could reopen a closed window, said for people; None unknown."""
        if self._templates is None:
            return None
        try:
            return reopen_hint(await self._templates.approved_templates(client.name))
        except StoreUnavailable:
            return None  # the refusal matters more than the hint

    async def window_reason(self, client: Client) -> str:
        """Why a free-form message cannot go out, with the client's approved templates that could reopen it."""
        hint = await self.reopen_hint(client)
        return f"{OUTSIDE_WINDOW_REASON}; {hint}" if hint else OUTSIDE_WINDOW_REASON

    async def flag_window_closed(self, client: Client, conversation_id: int) -> None:
        """Flag a conversation whose window is closed, naming the templates that could reopen it."""
        await self._store.flag(conversation_id, await self.window_reason(client))
        self._metrics.flagged(client.name)

    async def _send_part(self, client: Client, sender: WhatsAppSender, conversation: Conversation,
                         message: StoredMessage) -> str:
        """Send one message; a rich one goes as its readable text where it is not allowed (docs/rich-messages.md)."""
        payload = message.payload or {}
        if message.type not in RICH_TYPES or payload.get("fallback"):
            # A fallback recorded by an earlier attempt (a process that died before sending it) stays a fallback.
            return await self._send(client, sender, conversation, message, as_text=message.type in RICH_TYPES)
        if not getattr(client.settings, "rich_messages", True):
            reason = f"rich messages are off for this client ({client.env_prefix}RICH_MESSAGES=false)"
            return await self._fall_back(client, sender, conversation, message, {"reason": reason})
        try:
            return await self._send(client, sender, conversation, message)
        except WhatsAppError as error:
            if error.code not in RICH_FALLBACK_CODES:
                raise
            log.warning("whatsapp.rich_refused", extra={"client": client.name, "conversation": conversation.id,
                                                        "type": message.type, "code": error.code, "error": str(error)})
            reason = f"WhatsApp refused the {payload.get('kind', message.type)} message (code {error.code}: {error})"
            return await self._fall_back(client, sender, conversation, message, {"reason": reason, "code": error.code})

    async def _fall_back(self, client: Client, sender: WhatsAppSender, conversation: Conversation,
                         message: StoredMessage, fallback: dict) -> str:
        """Record on the message that its text goes instead (the timeline shows it), then send that text."""
        payload = {**(message.payload or {}), "fallback": {"sent_as": "text", **fallback}}
        await self._store.record_fallback(message.id, payload)
        log.info("whatsapp.rich_fallback", extra={"client": client.name, "conversation": conversation.id,
                                                  "message_id": message.id, "reason": fallback["reason"]})
        return await self._send(client, sender, conversation, message, as_text=True)

    async def _send(self, client: Client, sender: WhatsAppSender, conversation: Conversation,
                    message: StoredMessage, *, as_text: bool = False) -> str:
        async for attempt in self._retry.retrying(lambda error: isinstance(error, WhatsAppError) and error.is_transient):
            with attempt:
                await self._pacer.wait(conversation.phone_number_id, conversation.user_key)
                if attempt.retry_state.attempt_number > 1:
                    log.info("whatsapp.send_retry", extra={"client": client.name, "conversation": conversation.id,
                                                           "attempt": attempt.retry_state.attempt_number})
                try:
                    if message.type == "template":
                        template = (message.payload or {}).get("template")
                        if not isinstance(template, dict):
                            raise WhatsAppError("a template message was stored without its template")
                        return await sender.send_template(conversation.phone_number_id, client.access_token,
                                                          conversation, template)
                    if message.type in RICH_TYPES and not as_text:
                        content = (message.payload or {}).get(message.type)
                        if not isinstance(content, dict):
                            raise WhatsAppError(f"a {message.type} message was stored without its content")
                        return await sender.send_message(conversation.phone_number_id, client.access_token,
                                                         conversation, message.type, content)
                    return await sender.send_text(conversation.phone_number_id, client.access_token, conversation,
                                                  message.text or "")
                except WhatsAppError as error:  # every attempt's code, the retried ones too (130429 is news)
                    self._metrics.send_error(client.name, error.code)
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _refused(self, client: Client, conversation: Conversation, error: WhatsAppError, fields: dict) -> None:
        detail = {**fields, "code": error.code, "title": error.title, "status_code": error.status_code, "error": str(error)}
        if error.code == TOKEN_INVALID:
            # The client's token is dead: every conversation of the client fails until someone replaces it.
            log.error("whatsapp.token_invalid", extra={**detail, "detail": f"replace {client.env_prefix}ACCESS_TOKEN"})
        else:
            log.error("whatsapp.send_refused", extra=detail)
        reason = await self.window_reason(client) if error.code == OUTSIDE_WINDOW else \
            f"WhatsApp refused a message (code {error.code}: {error.title or error})"
        await self._store.flag(conversation.id, reason)
        self._metrics.flagged(client.name)

    async def _fail_rest(self, client: Client, messages: list[StoredMessage], error: dict) -> None:
        for message in messages:
            await self._store.mark_sent(message.id, None, "failed", error)
            self._metrics.sent(client.name, "failed")
