"""Answering one claimed conversation: its pending batch in, at most one reply out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar

from core.clients import Client, ClientRegistry
from core.clock import Clock
from core.conversation.media import MediaReader
from core.conversation.outbox import Outbox
from core.contacts.optout import opts_out
from core.conversation.window import is_within_window
from core.llm.agent import Agent, Turn, TurnResult
from core.metrics import Metrics
from core.ops.budget import BudgetGuard, budget_email, budget_message
from core.sandbox import is_sandbox_number
from core.storage.base import AnsweringStore, LeaseLost, PlaygroundStore, StoreUnavailable
from core.storage.records import Claim, Conversation, Intent, ModelUsage, NewMessage, StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.formatting import split_message, to_whatsapp

log = logging.getLogger("core.conversation")

T = TypeVar("T")

# How long a finished reply waits for its read receipt's Graph call at most: long enough for a healthy call (it
# normally ran during the model's seconds), short enough that a slow Graph never holds a reply back for long.
RECEIPT_WAIT_SECONDS = 2.0


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
    max_failures: int = 3  # failed attempts at one batch before it is answered with the fallback and flagged


@dataclass
class _Spent:
    """Tokens an attempt spent before it failed: they are counted even though no turn is stored."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: list[ModelUsage] = field(default_factory=list)


class Processor:
    """Turns a claim into a reply: read the batch, ask the agent, store the reply, send it, release."""

    def __init__(self, store: AnsweringStore, registry: ClientRegistry, agent: Agent, senders: Senders, media: MediaReader,
                 outbox: Outbox, timing: ProcessorTiming, clock: Clock,
                 effects: Callable[[], None] = lambda: None, budget: BudgetGuard | None = None,
                 metrics: Metrics | None = None, playground: PlaygroundStore | None = None) -> None:
        self._store = store
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._registry = registry
        self._agent = agent
        self._senders = senders
        self._media = media
        self._outbox = outbox
        self._timing = timing
        self._effects = effects  # called after a turn stored effects: carry them out now
        self._budget = budget  # clients past their monthly budget answer with their budget message
        self._playground = playground  # the console playground's edited prompts (sandbox-number conversations only)

    async def process(self, claim: Claim) -> None:
        """Answer the claimed conversation; an unexpected failure releases it to be tried again later."""
        conversation = claim.conversation
        fields = {"client": conversation.client, "conversation": conversation.id}
        spent = _Spent()
        try:
            await self._holding_lease(claim, self._answer(claim, spent))
        except asyncio.CancelledError:
            # Shutting down past the grace: the conversation stays due, for another process to answer at once.
            await asyncio.shield(self._store.release(claim, retry_at=None))
            log.info("conversation.handed_back", extra=fields)
            raise
        except LeaseLost:
            # Another processor holds the conversation now and answers it: nothing of this turn was stored or sent.
            log.warning("conversation.lease_lost", extra=fields)
        except Exception as error:
            log.exception("conversation.turn_failed", extra=fields)
            try:
                await self._after_failure(claim, error, spent)
            except LeaseLost:
                log.warning("conversation.lease_lost", extra=fields)
            except Exception:
                log.exception("conversation.failure_not_recorded", extra=fields)
                await self._store.release(claim, self._clock.now() + timedelta(seconds=self._timing.retry_seconds))

    async def _after_failure(self, claim: Claim, error: Exception, spent: _Spent) -> None:
        """Try the batch again later; after `max_failures` attempts end it: the fallback once, and a flag."""
        conversation = claim.conversation
        failures = await self._store.count_failure(claim, spent.prompt_tokens, spent.completion_tokens,
                                                   usage=spent.usage, now=self._clock.now())
        if failures < self._timing.max_failures:
            await self._store.release(claim, retry_at=self._clock.now() + timedelta(seconds=self._timing.retry_seconds))
            return
        client = self._registry.get(conversation.client)
        reason = f"the bot failed {failures} times on the same messages ({type(error).__name__}): the fallback was sent"
        log.error("conversation.poisoned", extra={"client": conversation.client, "conversation": conversation.id,
                                                  "failures": failures, "error": f"{type(error).__name__}: {error}"[:300]})
        batch = await self._store.pending_batch(conversation.id)
        fallback = [NewMessage(direction="out", role="assistant", type="text", status="pending",
                               text=client.fallback_message)] if client is not None and batch else []
        stored = await self._store.save_turn(claim, batch, uuid.uuid4().hex, fallback, self._clock.now())
        await self._store.flag(conversation.id, reason)
        self._metrics.flagged(conversation.client)
        if fallback:
            self._metrics.fallback(conversation.client, "turn_failures")
        if stored and client is not None:
            await self._outbox.deliver(client, self._senders.for_client(client), conversation, stored)
        await self._store.finish_turn(claim, self._clock.now())

    async def _holding_lease(self, claim: Claim, work: Awaitable[T]) -> T:
        """Run `work` while renewing the lease; losing the lease stops the work before it can reply twice."""
        task = asyncio.ensure_future(work)
        current = claim
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._timing.lease_seconds / 3)
                if done:
                    return task.result()
                try:
                    renewed = await self._store.renew_lease(current, self._clock.now(), self._timing.lease_seconds)
                except StoreUnavailable:
                    # The store is down for a moment: nobody can take the conversation while the lease we hold lasts,
                    # so the work goes on (a reply WhatsApp accepted still gets recorded, not sent again) until the
                    # lease would end before the next renewal.
                    if (current.lease_until - self._clock.now()).total_seconds() > self._timing.lease_seconds / 3:
                        continue
                    raise
                if renewed is None:
                    raise LeaseLost(f"conversation {claim.conversation.id} is no longer held by {claim.owner}")
                current = renewed
        finally:
            if not task.done():
                task.cancel()

    async def _answer(self, claim: Claim, spent: _Spent) -> None:
        conversation = claim.conversation
        client = self._registry.get(conversation.client)
        if client is None:
            log.error("conversation.unknown_client", extra={"client": conversation.client, "conversation": conversation.id})
            await self._store.release(claim, retry_at=self._clock.now() + timedelta(hours=1))
            return
        sender = self._senders.for_client(client)
        # Replies stored by a processor that died before sending them go out first, without asking the model again.
        inputs = await self._store.turn_inputs(conversation.id, self._timing.history_messages)
        if inputs.unsent:
            log.info("conversation.resending", extra={"client": client.name, "conversation": conversation.id,
                                                      "parts": len(inputs.unsent)})
            await self._outbox.deliver(client, sender, conversation, inputs.unsent)
        if inputs.batch:
            await self._turn(claim, client, sender, inputs.batch, inputs.history, spent)
        await self._store.finish_turn(claim, self._clock.now())

    async def _turn(self, claim: Claim, client: Client, sender: WhatsAppSender, batch: list[StoredMessage],
                    history: list[StoredMessage], spent: _Spent) -> None:
        conversation = claim.conversation
        fields = {"client": client.name, "conversation": conversation.id}
        if not is_within_window(conversation.last_inbound_at, self._clock.now()):
            # A late delivery (Meta retries for days): no free-form reply could go out, so the model is not asked.
            log.warning("conversation.outside_window", extra={**fields, "batch": len(batch)})
            await self._store.save_turn(claim, batch, uuid.uuid4().hex, [], self._clock.now())
            await self._outbox.flag_window_closed(client, conversation.id)
            return
        batch_id = uuid.uuid4().hex
        if opts_out(batch, client.settings.opt_out_keywords):
            await self._opt_out(claim, client, sender, batch, batch_id)
            return
        over_budget = await self._budget.exceeded(client, self._clock.now()) if self._budget is not None else None
        receipt = asyncio.Event()
        typing = asyncio.create_task(self._keep_typing(client, sender, conversation.phone_number_id, batch[-1].wamid,
                                                       receipt))
        try:
            if over_budget is not None:
                # Credits spent: no model call (nor transcription) until the month ends or the budget is raised.
                log.warning("usage.over_budget", extra={**fields, "detail": over_budget})
                result = TurnResult(reply=budget_message(client),
                                    intents=budget_email(client, conversation, over_budget, self._clock.now()))
                await self._store.flag(conversation.id, over_budget)
                self._metrics.flagged(client.name)
                self._metrics.fallback(client.name, "over_budget")
            else:
                result = await self._model_turn(claim, client, sender, batch, history, batch_id)
            spent.prompt_tokens, spent.completion_tokens = result.prompt_tokens, result.completion_tokens
            spent.usage = result.usage
            if not result.reply and not result.rich:
                log.warning("llm.empty_reply", extra=fields)
                result = replace(result, reply=client.fallback_message)
                self._metrics.fallback(client.name, "empty_reply")
            # The read receipt comes before the reply, even when the answer came first (a model faster than Graph).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receipt.wait(), timeout=RECEIPT_WAIT_SECONDS)
        finally:
            typing.cancel()
        outbound = await self._reply_parts(client, result)
        intents = [*result.intents, *handover_email(client, conversation, result.handovers)]
        for limit in result.limits:
            log.warning("turn.limit_hit", extra={**fields, "limit": limit})
        # Each bound hit stays on the conversation, where its staff and the console see it (the model does not).
        notes = [NewMessage(direction="internal", role="system", type="limit", text=f"limit reached: {limit}")
                 for limit in result.limits]
        # The reply, the steps and every effect the tools decided: one transaction, so none happens twice or alone.
        stored = await self._store.save_turn(claim, batch, batch_id, [*notes, *result.steps, *outbound],
                                             self._clock.now(), intents, result.usage)
        # Stored with the turn: a failure after this point must not count them again.
        spent.prompt_tokens, spent.completion_tokens, spent.usage = 0, 0, []
        self._metrics.turn(client.name)
        if intents:
            self._effects()
        if result.handovers:
            log.info("conversation.handed_over", extra={**fields, "reason": "; ".join(result.handovers)})
        if not stored:
            log.info("conversation.reply_dropped_for_operator", extra=fields)
            return
        if await self._outbox.deliver(client, sender, conversation, stored):
            log.info("conversation.replied", extra={**fields, "batch": len(batch), "parts": len(stored),
                                                    "category": result.category})

    async def _opt_out(self, claim: Claim, client: Client, sender: WhatsAppSender, batch: list[StoredMessage],
                       batch_id: str) -> None:
        """An opt-out keyword: off broadcasts, told once (stored with the turn, sent by the outbox), no model call."""
        conversation = claim.conversation
        reply = NewMessage(direction="out", role="assistant", type="text", status="pending",
                           text=client.settings.opt_out_message)
        stored = await self._store.opt_out_turn(claim, batch, batch_id, reply, self._clock.now())
        log.info("contacts.opted_out", extra={"client": client.name, "conversation": conversation.id,
                                              "told": bool(stored)})
        if stored:
            await self._outbox.deliver(client, sender, conversation, stored)

    async def _model_turn(self, claim: Claim, client: Client, sender: WhatsAppSender, batch: list[StoredMessage],
                          history: list[StoredMessage], batch_id: str) -> TurnResult:
        """The batch's media read, then the agent's answer; the fallback (and a flag) when the model fails."""
        conversation = claim.conversation
        read = await self._media.read(client, sender, batch)
        # Only a sandbox number's conversation (deliveries signed with the sandbox secret) can be a playground's:
        # no WhatsApp user can reach an edited prompt.
        trial = await self._playground.playground_prompt(client.name, conversation.user_key) \
            if self._playground is not None and is_sandbox_number(conversation.phone_number_id) else None
        turn = Turn(client, conversation, history, read.messages, self._clock.now(), read.images, batch_id, trial)
        try:
            return await self._agent.run(turn)
        except Exception as error:  # the user must not be left in silence: fallback, flag, log
            log.error("llm.unavailable", exc_info=True, extra={"client": client.name, "conversation": conversation.id,
                                                               "error": f"{type(error).__name__}: {error}"[:300]})
            await self._store.flag(conversation.id, f"the model could not answer ({type(error).__name__})")
            self._metrics.flagged(client.name)
            self._metrics.fallback(client.name, "model_error")
            return TurnResult(reply=client.fallback_message)

    async def _reply_parts(self, client: Client, result: TurnResult) -> list[NewMessage]:
        """The reply (and, when the client sends them, the texts the model wrote beside its tool calls, first)."""
        beside = [step.text for step in result.steps
                  if step.type == "tool_calls" and step.text and step.text.strip()] \
            if getattr(client.settings, "send_text_beside_tools", True) else []
        texts = [*beside, result.reply]
        # Long replies are formatted in a thread: a turn's CPU work must not hold every other tenant's webhooks.
        formatted = await asyncio.to_thread(_format, texts) if sum(map(len, texts)) > 4000 else _format(texts)
        step_prompt = sum(step.prompt_tokens for step in result.steps)
        step_completion = sum(step.completion_tokens for step in result.steps)
        parts: list[NewMessage] = []
        for index, chunks in enumerate(formatted):
            final = index == len(formatted) - 1
            if final:
                # What the tools sent (buttons, a list…) goes after the words beside their calls, before the answer.
                rich = [replace(message, category=result.category) for message in result.rich]
                if not result.reply:
                    # No words after them: the first carries the tokens of the calls that produced the turn's end.
                    rich[0] = replace(rich[0], prompt_tokens=result.prompt_tokens - step_prompt,
                                      completion_tokens=result.completion_tokens - step_completion)
                    parts += rich
                    break
                parts += rich
            for number, chunk in enumerate(chunks):
                first_of_reply = final and number == 0
                # The reply carries the tokens of the calls that produced it (the tool rounds carry their own).
                parts.append(NewMessage(
                    direction="out", role="assistant", type="text", text=chunk, status="pending",
                    category=result.category, payload=None if final else {"beside_tool_calls": True},
                    prompt_tokens=(result.prompt_tokens - step_prompt) if first_of_reply else 0,
                    completion_tokens=(result.completion_tokens - step_completion) if first_of_reply else 0))
        return parts

    async def _keep_typing(self, client: Client, sender: WhatsAppSender, phone_number_id: str, wamid: str | None,
                           receipt: asyncio.Event) -> None:
        """Mark read with the typing indicator now (`receipt` is set once it was tried), and again before Meta hides
        it (after 25 s)."""
        try:
            while wamid:
                try:
                    await sender.mark_read(phone_number_id, client.access_token, wamid, typing=True)
                except WhatsAppError as error:  # a missed read receipt must not cost the reply
                    log.warning("whatsapp.mark_read_failed", extra={"client": client.name, "code": error.code,
                                                                    "error": str(error)})
                receipt.set()
                await asyncio.sleep(self._timing.typing_refresh_seconds)
        finally:
            receipt.set()


def _format(texts: list[str]) -> list[list[str]]:
    """Each text in WhatsApp's formatting, split under its length limit."""
    return [split_message(to_whatsapp(text)) or [text] for text in texts]


def handover_email(client: Client, conversation: Conversation, reasons: list[str]) -> list[Intent]:
    """The staff email of a hand-over, as an intent of the turn (none when no tool asked for a person or no SMTP)."""
    if not reasons:
        return []
    if client.settings.smtp_config() is None:
        log.warning("notify.no_smtp", extra={"client": client.name, "conversation": conversation.id,
                                             "detail": f"set {client.env_prefix}SMTP_HOST and _SMTP_TO to email staff"})
        return []
    reason = "; ".join(reasons)
    who = f"{conversation.contact_name or 'someone'} ({conversation.wa_id or conversation.user_key})"
    body = (f"Conversation {conversation.id} with {who} on {conversation.phone_number_id} was handed to a person.\n"
            f"Reason: {reason}\n\nThe bot stays silent in it until it is released "
            f"(POST /api/v1/{client.name}/conversations/{conversation.id}/release) or the operator is idle for "
            f"{client.settings.human_idle_minutes:g} minutes.")
    return [Intent("email", "handover:email", {"subject": f"[{client.name}] Conversation {conversation.id} needs a person",
                                               "body": body, "reply_to": None})]
