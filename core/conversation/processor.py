"""Answering one claimed conversation: its pending batch in, at most one reply out."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from core.clients import Client, ClientRegistry
from core.clock import Clock
from core.conversation.media import MediaReader
from core.conversation.outbox import Outbox
from core.conversation.window import OUTSIDE_WINDOW_REASON, is_within_window
from core.llm.agent import Agent, Turn, TurnResult
from core.storage.base import LeaseLost, Store
from core.storage.records import Claim, Conversation, NewMessage, StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.formatting import split_message, to_whatsapp

log = logging.getLogger("core.conversation")

T = TypeVar("T")


@dataclass(frozen=True)
class Senders:
    """The live Graph API sender and the sandbox; each client uses the one its send mode names."""

    live: WhatsAppSender
    sandbox: WhatsAppSender

    def for_client(self, client: Client) -> WhatsAppSender:
        return self.live if client.send_mode == "live" else self.sandbox


@dataclass(frozen=True)
class ProcessorTiming:
    lease_seconds: float
    retry_seconds: float
    typing_refresh_seconds: float
    history_messages: int


class Processor:
    """Turns a claim into a reply: read the batch, ask the agent, store the reply, send it, release."""

    def __init__(self, store: Store, registry: ClientRegistry, agent: Agent, senders: Senders, media: MediaReader,
                 outbox: Outbox, timing: ProcessorTiming, clock: Clock,
                 notify: Callable[[Client, str, str], object] = lambda client, subject, body: None) -> None:
        self._store = store
        self._clock = clock
        self._registry = registry
        self._agent = agent
        self._senders = senders
        self._media = media
        self._outbox = outbox
        self._timing = timing
        self._notify = notify

    async def process(self, claim: Claim) -> None:
        """Answer the claimed conversation; an unexpected failure releases it to be tried again later."""
        conversation = claim.conversation
        fields = {"client": conversation.client, "conversation": conversation.id}
        try:
            await self._holding_lease(claim, self._answer(claim))
        except asyncio.CancelledError:
            await asyncio.shield(self._store.release(claim, retry_at=None))
            raise
        except LeaseLost:
            # Another processor holds the conversation now and answers it: nothing of this turn was stored or sent.
            log.warning("conversation.lease_lost", extra=fields)
        except Exception:
            log.exception("conversation.turn_failed", extra=fields)
            await self._store.release(claim, retry_at=self._clock.now() + timedelta(seconds=self._timing.retry_seconds))

    async def _holding_lease(self, claim: Claim, work: Awaitable[T]) -> T:
        """Run `work` while renewing the lease; losing the lease stops the work before it can reply twice."""
        task = asyncio.ensure_future(work)
        current = claim
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._timing.lease_seconds / 3)
                if done:
                    return task.result()
                renewed = await self._store.renew_lease(current, self._clock.now(), self._timing.lease_seconds)
                if renewed is None:
                    raise LeaseLost(f"conversation {claim.conversation.id} is no longer held by {claim.owner}")
                current = renewed
        finally:
            if not task.done():
                task.cancel()

    async def _answer(self, claim: Claim) -> None:
        conversation = claim.conversation
        client = self._registry.get(conversation.client)
        if client is None:
            log.error("conversation.unknown_client", extra={"client": conversation.client, "conversation": conversation.id})
            await self._store.release(claim, retry_at=self._clock.now() + timedelta(hours=1))
            return
        sender = self._senders.for_client(client)
        # Replies stored by a processor that died before sending them go out first, without asking the model again.
        unsent = await self._store.unsent_replies(conversation.id)
        if unsent:
            log.info("conversation.resending", extra={"client": client.name, "conversation": conversation.id,
                                                      "parts": len(unsent)})
            await self._outbox.deliver(client, sender, conversation, unsent)
        batch = await self._store.pending_batch(conversation.id)
        if batch:
            await self._turn(claim, client, sender, batch)
        await self._store.finish_turn(claim, self._clock.now())

    async def _turn(self, claim: Claim, client: Client, sender: WhatsAppSender, batch: list[StoredMessage]) -> None:
        conversation = claim.conversation
        fields = {"client": client.name, "conversation": conversation.id}
        if not is_within_window(conversation.last_inbound_at, self._clock.now()):
            # A late delivery (Meta retries for days): no free-form reply could go out, so the model is not asked.
            log.warning("conversation.outside_window", extra={**fields, "batch": len(batch)})
            await self._store.save_turn(claim, batch, uuid.uuid4().hex, [], self._clock.now())
            await self._store.flag(conversation.id, OUTSIDE_WINDOW_REASON)
            return
        typing = asyncio.create_task(self._keep_typing(client, sender, conversation.phone_number_id, batch[-1].wamid))
        try:
            read = await self._media.read(client, sender, batch)
            history = await self._store.history(conversation.id, self._timing.history_messages)
            turn = Turn(client, conversation, history, read.messages, self._clock.now(), read.images)
            try:
                result = await self._agent.run(turn)
            except Exception as error:  # the user must not be left in silence: fallback, flag, log
                log.error("llm.unavailable", exc_info=True,
                          extra={**fields, "error": f"{type(error).__name__}: {error}"[:300]})
                result = TurnResult(reply=client.fallback_message)
                await self._store.flag(conversation.id, f"the model could not answer ({type(error).__name__})")
            if not result.reply:
                log.warning("llm.empty_reply", extra=fields)
                result = replace(result, reply=client.fallback_message)
        finally:
            typing.cancel()
        outbound = self._reply_parts(result)
        stored = await self._store.save_turn(claim, batch, uuid.uuid4().hex, [*result.steps, *outbound], self._clock.now())
        if not stored:
            log.info("conversation.reply_dropped_for_operator", extra=fields)
            return
        if await self._outbox.deliver(client, sender, conversation, stored):
            log.info("conversation.replied", extra={**fields, "batch": len(batch), "parts": len(stored),
                                                    "category": result.category})
        if result.handovers:
            await self._hand_over(client, conversation, "; ".join(result.handovers))

    async def _hand_over(self, client: Client, conversation: Conversation, reason: str) -> None:
        """A tool asked for a person: the reply is out, now the bot goes quiet and staff hear of it."""
        await self._store.set_mode(client.name, conversation.id, "human", self._clock.now())
        who = f"{conversation.contact_name or 'someone'} ({conversation.wa_id or conversation.user_key})"
        body = (f"Conversation {conversation.id} with {who} on {conversation.phone_number_id} was handed to a person.\n"
                f"Reason: {reason}\n\nThe bot stays silent in it until it is released "
                f"(POST /api/v1/{client.name}/conversations/{conversation.id}/release) or the operator is idle for "
                f"{client.settings.human_idle_minutes:g} minutes.")
        self._notify(client, f"[{client.name}] Conversation {conversation.id} needs a person", body)
        log.info("conversation.handed_over", extra={"client": client.name, "conversation": conversation.id,
                                                    "reason": reason})

    def _reply_parts(self, result: TurnResult) -> list[NewMessage]:
        parts = split_message(to_whatsapp(result.reply)) or [result.reply]
        step_prompt = sum(step.prompt_tokens for step in result.steps)
        step_completion = sum(step.completion_tokens for step in result.steps)
        # The reply carries the tokens of the calls that produced it (the tool rounds carry their own).
        return [NewMessage(direction="out", role="assistant", type="text", text=part, status="pending",
                           category=result.category,
                           prompt_tokens=(result.prompt_tokens - step_prompt) if index == 0 else 0,
                           completion_tokens=(result.completion_tokens - step_completion) if index == 0 else 0)
                for index, part in enumerate(parts)]

    async def _keep_typing(self, client: Client, sender: WhatsAppSender, phone_number_id: str, wamid: str | None) -> None:
        """Mark read with the typing indicator now, and again before Meta hides it (after 25 s)."""
        if not wamid:
            return
        while True:
            try:
                await sender.mark_read(phone_number_id, client.access_token, wamid, typing=True)
            except WhatsAppError as error:  # a missed read receipt must not cost the reply
                log.warning("whatsapp.mark_read_failed", extra={"client": client.name, "code": error.code,
                                                                "error": str(error)})
            await asyncio.sleep(self._timing.typing_refresh_seconds)
