"""The agent: one turn of a conversation with the model, tools included."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from core.clients import Client
from core.clock import Clock, SystemClock
from core.knowledge.base import Retriever
from core.knowledge.tool import best_answer
from core.llm.history import chat_messages
from core.llm.instructions import ClassifiedPrompts, SinglePrompt
from core.llm.bounds import TurnBounds, cut_reply
from core.llm.concurrency import AdaptiveLimiter
from core.llm.ratelimit import call_limited
from core.llm.tools import ToolContext, Toolbox
from core.metrics import Metrics
from core.retry import RetryPolicy
from core.storage.records import Conversation, Intent, ModelUsage, NewMessage, StoredMessage

log = logging.getLogger("core.llm")

# Worth another try after a pause: rate limits, timeouts, lost connections and the provider's 5xx.
TRANSIENT = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)
CLASSIFIER_CONTEXT_MESSAGES = 6


@dataclass(frozen=True)
class Turn:
    """What the agent needs to answer a batch."""

    client: Client
    conversation: Conversation
    history: list[StoredMessage]
    batch: list[StoredMessage]
    now: datetime
    images: dict[int, str] = field(default_factory=dict)
    batch_id: str = ""  # the turn's id: what its tools decide is keyed by it
    # The console playground's edited prompt under trial, in place of the client's (its conversations only).
    instructions: str | None = None


@dataclass(frozen=True)
class TurnResult:
    """The reply to send, and what happened on the way (tool calls and results) with token usage."""

    reply: str
    steps: list[NewMessage] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    category: str | None = None
    intents: list[Intent] = field(default_factory=list)  # what the tools decided: records, emails, hand-overs
    limits: list[str] = field(default_factory=list)  # the bounds this turn hit (core/llm/bounds.py)
    usage: list[ModelUsage] = field(default_factory=list)  # model calls and their tokens, per model (usage ledger)
    rich: list[NewMessage] = field(default_factory=list)  # rich messages the tools sent, in order (before the reply)

    @property
    def handovers(self) -> list[str]:
        """Why tools asked for a person (empty: nobody did)."""
        return [intent.data["reason"] for intent in self.intents if intent.kind == "handover"]


class Agent(Protocol):
    async def run(self, turn: Turn) -> TurnResult:
        """Answer the turn's batch; raises when the model cannot be reached."""


class OfflineResponder:
    """Used when no OPENAI_API_KEY is set: the best knowledge passage when one matches well, else the offline message."""

    def __init__(self, retriever: Retriever | None = None) -> None:
        self._retriever = retriever

    async def run(self, turn: Turn) -> TurnResult:
        fields = {"client": turn.client.name, "conversation": turn.conversation.id}
        question = "\n".join(message.text or "" for message in turn.batch)
        if self._retriever is not None and question.strip():
            answer = await best_answer(self._retriever, turn.client.name, question)
            if answer:
                log.info("llm.offline_knowledge_reply", extra=fields)
                return TurnResult(reply=answer)
        log.info("llm.offline_reply", extra=fields)
        return TurnResult(reply=turn.client.offline_message)


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    def add(self, model: str, prompt: int, completion: int) -> None:
        """One model call answered (with its tokens, when the provider reported them)."""
        self.prompt += prompt
        self.completion += completion
        seen = self.by_model.get(model, ModelUsage(model, 0, 0, 0))
        self.by_model[model] = ModelUsage(model, seen.calls + 1, seen.prompt_tokens + prompt,
                                          seen.completion_tokens + completion)


class OpenAIAgent:
    """Chat Completions with the client's instructions and tools, looping over tool calls up to a bound."""

    def __init__(self, client: AsyncOpenAI, *, max_tool_rounds: int, history_budget: int, retry: RetryPolicy,
                 toolbox: Toolbox | None = None, bounds: TurnBounds = TurnBounds(),
                 limiter: AdaptiveLimiter | None = None, clock: Clock | None = None,
                 metrics: Metrics | None = None) -> None:
        self._openai = client
        self._metrics = metrics or Metrics()
        self._limiter = limiter  # the endpoint's: 429s lower how many calls are in flight, successes raise it
        self._clock = clock or SystemClock()
        self._bounds = bounds
        self._max_tool_rounds = max_tool_rounds
        self._history_budget = history_budget
        self._retry = retry
        self._toolbox = toolbox

    async def run(self, turn: Turn) -> TurnResult:
        client = turn.client
        limits: list[str] = []
        batch, images = bounded_batch(turn, self._bounds, limits)
        conversation = chat_messages(turn.history, batch, budget=self._history_budget, images=images)
        usage = _Usage()
        category = None
        if isinstance(client.spec.instructions, ClassifiedPrompts):
            category = await self._classify(turn, client.spec.instructions, conversation, usage)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(turn, category)},
            *conversation,
        ]
        tools = client.tools(category)
        schemas = tools.openai_schemas()
        context = ToolContext(client=client.name, conversation_id=turn.conversation.id,
                              user_key=turn.conversation.user_key, settings=client.settings, now=turn.now,
                              contact_name=turn.conversation.contact_name, toolbox=self._toolbox,
                              batch_id=turn.batch_id,
                              records_per_day=self._bounds.records_per_conversation_per_day)
        calls_made = 0
        steps: list[NewMessage] = []
        for round_number in range(self._max_tool_rounds + 1):
            options: dict[str, Any] = {}
            if schemas:
                # The last round may not call tools, so a turn always ends in words.
                options = {"tool_choice": "none" if round_number == self._max_tool_rounds else "auto", "tools": schemas}
            before = (usage.prompt, usage.completion)
            answer = await self._complete(turn, usage, model=client.model, messages=messages, **options)
            calls = [call for call in answer.tool_calls or [] if call.type == "function"]
            if not calls or round_number == self._max_tool_rounds:
                if round_number == self._max_tool_rounds and calls:
                    limits.append(f"tool rounds: {self._max_tool_rounds} (MAX_TOOL_ROUNDS)")
                reply, cut = cut_reply((answer.content or "").strip(), self._bounds.reply_characters)
                if cut:
                    limits.append(f"reply characters: {self._bounds.reply_characters} (MAX_REPLY_CHARACTERS)")
                return TurnResult(reply=reply, steps=steps, prompt_tokens=usage.prompt,
                                  completion_tokens=usage.completion, category=category,
                                  intents=list(context.intents), limits=limits, usage=list(usage.by_model.values()),
                                  rich=[message for _, message in context.rich])
            records = [{"id": call.id, "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments}}
                       for call in calls]
            steps.append(NewMessage(direction="internal", role="assistant", type="tool_calls", text=answer.content,
                                    payload={"tool_calls": records}, category=category,
                                    prompt_tokens=usage.prompt - before[0], completion_tokens=usage.completion - before[1]))
            messages.append({"role": "assistant", "content": answer.content, "tool_calls": records})
            for index, call in enumerate(calls):
                context.begin_call(call.id)
                # Every call gets an answer (the API requires it); those over a bound are told so, not run.
                refusal = self._over_bound(index, calls_made, limits)
                if refusal is None:
                    calls_made += 1
                result = refusal or await self._call_tool(turn, context, call.function.name, call.function.arguments,
                                                          category)
                steps.append(NewMessage(direction="internal", role="tool", type="tool_result", text=result,
                                        payload={"tool_call_id": call.id, "name": call.function.name}, category=category))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise AssertionError("unreachable: the last round always returns")

    def _over_bound(self, index: int, made: int, limits: list[str]) -> str | None:
        """Why this tool call is not run (too many in its round, or in the turn); None when it may run."""
        if index >= self._bounds.tool_calls_per_round:
            note = f"tool calls per round: {self._bounds.tool_calls_per_round} (MAX_TOOL_CALLS_PER_ROUND)"
        elif made >= self._bounds.tool_calls_per_turn:
            note = f"tool calls per turn: {self._bounds.tool_calls_per_turn} (MAX_TOOL_CALLS_PER_TURN)"
        else:
            return None
        if note not in limits:
            limits.append(note)
        return f"Error: not run: the limit of {note} was reached. Answer with what you have."

    async def _send(self, client: str, request: dict[str, Any]) -> ChatCompletion:
        model = str(request.get("model"))

        async def post() -> ChatCompletion:
            # Timed here, not around the limiter: the histogram is the model's latency, not our queue's.
            started = time.perf_counter()
            try:
                completion = await self._openai.post("/chat/completions", body=request, cast_to=ChatCompletion,
                                                     options={"security": {"bearer_auth": True}})
            except Exception:
                self._metrics.model_call(client, model, time.perf_counter() - started, ok=False)
                raise
            usage = completion.usage
            self._metrics.model_call(client, model, time.perf_counter() - started, ok=True,
                                     prompt_tokens=usage.prompt_tokens if usage else 0,
                                     completion_tokens=usage.completion_tokens if usage else 0)
            return completion

        if self._limiter is None:
            return await post()
        return await call_limited(self._limiter, self._clock, post)

    async def _complete(self, turn: Turn, usage: _Usage, **request: Any) -> Any:
        """One model call, retried on transient failures within the deadline.

        Sent with the SDK's `post` (its documented way to send a body as is), not `chat.completions.create`: create
        walks the whole request (history, tool schemas) through a type-driven transform, ~1 ms of CPU a call, that
        changes nothing in these plain JSON dicts. Same client, headers, auth (`security` as create sets it), timeout,
        errors and response model; tests/test_model_request.py checks the bytes are the same."""
        async for attempt in self._retry.retrying(lambda error: isinstance(error, TRANSIENT), paced=self._paced):
            with attempt:
                number = attempt.retry_state.attempt_number
                if number > 1:
                    log.warning("llm.retry", extra={"client": turn.client.name, "conversation": turn.conversation.id,
                                                    "attempt": number})
                completion = await self._send(turn.client.name, request)
        tokens = completion.usage
        usage.add(request["model"], tokens.prompt_tokens if tokens else 0, tokens.completion_tokens if tokens else 0)
        return completion.choices[0].message

    def _paced(self, error: BaseException) -> bool:
        """A 429 waits in the limiter (the provider's reset), so it is retried at once and spends no attempt."""
        return self._limiter is not None and isinstance(error, openai.RateLimitError)

    async def _classify(self, turn: Turn, instructions: ClassifiedPrompts, conversation: list[dict[str, Any]],
                        usage: _Usage) -> str:
        recent = [m for m in conversation if m["role"] in {"user", "assistant"} and not m.get("tool_calls")]
        messages = [{"role": "system", "content": instructions.classifier_prompt()},
                    *recent[-CLASSIFIER_CONTEXT_MESSAGES:]]
        answer = await self._complete(turn, usage, model=turn.client.classifier_model, messages=messages)
        category = instructions.parse_category(answer.content)
        log.info("llm.classified", extra={"client": turn.client.name, "conversation": turn.conversation.id,
                                          "category": category})
        return category

    async def _call_tool(self, turn: Turn, context: ToolContext, name: str, arguments: str, category: str | None) -> str:
        fields = {"client": turn.client.name, "conversation": turn.conversation.id, "tool": name}
        tool = turn.client.tools(category).get(name)
        if tool is None:
            log.warning("llm.unknown_tool", extra=fields)
            return f"Error: there is no tool named {name!r}."
        try:
            return await tool.call(arguments, context)
        except Exception as error:  # a broken tool must not sink the turn: the model hears it failed
            log.exception("llm.tool_failed", extra=fields)
            return f"Error: the tool {name} failed ({type(error).__name__})."


def system_prompt(turn: Turn, category: str | None) -> str:
    """The client's system prompt, or the playground's edited one: it replaces the base prompt (a category's own
    part is still added after it)."""
    instructions = turn.client.spec.instructions
    if turn.instructions is not None:
        instructions = replace(instructions, base=turn.instructions) if isinstance(instructions, ClassifiedPrompts) \
            else SinglePrompt(turn.instructions)
    return instructions.system_prompt(category)


def bounded_batch(turn: Turn, bounds: TurnBounds, limits: list[str]) -> tuple[list[StoredMessage], dict[int, str]]:
    """The batch the model sees: its latest messages and images within the bounds, what was cut said in one line."""
    batch, images = list(turn.batch), dict(turn.images)
    if len(batch) > bounds.batch_messages:
        cut = len(batch) - bounds.batch_messages + 1
        first = (batch[0].text or "").replace("\n", " ")[:80]
        note = replace(batch[cut - 1], text=f"[{cut} earlier messages of this burst are not shown; the first said: "
                                            f"«{first}»]", payload=None)
        batch = [note, *batch[cut:]]
        images = {key: value for key, value in images.items() if key in {m.id for m in batch[1:]}}
        limits.append(f"messages per model call: {bounds.batch_messages} (MAX_BATCH_MESSAGES)")
    if len(images) > bounds.images:
        kept = sorted(images)[-bounds.images:]  # the latest images; the others reach the model as their caption
        images = {key: images[key] for key in kept}
        limits.append(f"images per model call: {bounds.images} (MAX_IMAGES_PER_TURN)")
    return batch, images
