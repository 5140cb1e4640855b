"""Answering one claimed conversation: its pending batch in, at most one reply out."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from core.clients import Client, ClientRegistry
from core.llm.agent import Agent, Turn
from core.storage.base import Store
from core.storage.records import Claim, NewMessage, utcnow
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError

log = logging.getLogger("core.conversation")


@dataclass(frozen=True)
class Senders:
    """The live Graph API sender and the sandbox; each client uses the one its send mode names."""

    live: WhatsAppSender
    sandbox: WhatsAppSender

    def for_client(self, client: Client) -> WhatsAppSender:
        return self.live if client.send_mode == "live" else self.sandbox


class Processor:
    """Turns a claim into a reply: read the batch, ask the agent, send, record, release."""

    def __init__(self, store: Store, registry: ClientRegistry, agent: Agent, senders: Senders, *,
                 history_messages: int, lease_seconds: float, retry_seconds: float) -> None:
        self._store = store
        self._registry = registry
        self._agent = agent
        self._senders = senders
        self._history_messages = history_messages
        self._lease_seconds = lease_seconds
        self._retry_seconds = retry_seconds

    async def process(self, claim: Claim) -> None:
        """Answer the claimed conversation; any failure releases it to be tried again later."""
        conversation = claim.conversation
        fields = {"client": conversation.client, "conversation": conversation.id}
        try:
            await self._with_lease(claim, self._answer(claim))
        except asyncio.CancelledError:
            await asyncio.shield(self._store.release(claim, retry_at=None))
            raise
        except Exception:
            log.exception("conversation.turn_failed", extra=fields)
            await self._store.release(claim, retry_at=utcnow() + timedelta(seconds=self._retry_seconds))

    async def _with_lease(self, claim: Claim, work) -> None:
        """Run `work` while renewing the lease; losing the lease stops the work before it can reply twice."""
        task = asyncio.ensure_future(work)
        current = claim
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._lease_seconds / 3)
                if done:
                    return task.result()
                renewed = await self._store.renew_lease(current, utcnow(), self._lease_seconds)
                if renewed is None:
                    log.error("conversation.lease_lost", extra={"client": claim.conversation.client,
                                                                "conversation": claim.conversation.id})
                    task.cancel()
                    raise RuntimeError("lease lost")
                current = renewed
        finally:
            if not task.done():
                task.cancel()

    async def _answer(self, claim: Claim) -> None:
        conversation = claim.conversation
        fields = {"client": conversation.client, "conversation": conversation.id}
        client = self._registry.get(conversation.client)
        batch = await self._store.pending_batch(conversation.id)
        batch_id = uuid.uuid4().hex
        if client is None or not batch:
            if client is None:
                log.error("conversation.unknown_client", extra=fields)
            await self._store.complete_batch(claim, [], batch_id, [], utcnow())
            return
        sender = self._senders.for_client(client)
        try:
            await sender.mark_read(conversation.phone_number_id, client.access_token, batch[-1].wamid or "", typing=True)
        except WhatsAppError as error:  # a missed read receipt must not cost the reply
            log.warning("whatsapp.mark_read_failed", extra={**fields, "code": error.code, "error": str(error)})
        history = await self._store.history(conversation.id, self._history_messages)
        result = await self._agent.run(Turn(client, conversation, history, batch, utcnow()))
        reply = result.reply or client.offline_message
        if not result.reply:
            log.warning("llm.empty_reply", extra=fields)
        step_prompt = sum(step.prompt_tokens for step in result.steps)
        step_completion = sum(step.completion_tokens for step in result.steps)
        outbound = NewMessage(direction="out", role="assistant", type="text", text=reply,
                              prompt_tokens=result.prompt_tokens - step_prompt,
                              completion_tokens=result.completion_tokens - step_completion)
        try:
            wamid = await sender.send_text(conversation.phone_number_id, client.access_token, conversation, reply)
        except WhatsAppError as error:
            if error.is_transient:
                raise
            # Meta refused for good (window closed, bad token...): keep the reply as failed instead of retrying forever.
            log.error("whatsapp.send_refused", extra={**fields, "code": error.code, "error": str(error)})
            failed = replace(outbound, status="failed", error=error.as_record())
            await self._store.complete_batch(claim, batch, batch_id, [*result.steps, failed], utcnow())
            return
        status = "sent" if client.send_mode == "live" else "sandbox"
        sent = replace(outbound, wamid=wamid, status=status)
        await self._store.complete_batch(claim, batch, batch_id, [*result.steps, sent], utcnow())
        log.info("conversation.replied", extra={**fields, "batch": len(batch), "wamid": wamid})
