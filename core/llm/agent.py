"""The agent: one turn of a conversation with the model, tools included."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from openai import AsyncOpenAI

from core.clients import Client
from core.llm.history import chat_messages
from core.llm.tools import ToolContext
from core.storage.records import Conversation, NewMessage, StoredMessage

log = logging.getLogger("core.llm")


@dataclass(frozen=True)
class Turn:
    """What the agent needs to answer a batch."""

    client: Client
    conversation: Conversation
    history: list[StoredMessage]
    batch: list[StoredMessage]
    now: datetime


@dataclass(frozen=True)
class TurnResult:
    """The reply to send, and what happened on the way (tool calls and results) with token usage."""

    reply: str
    steps: list[NewMessage] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Agent(Protocol):
    async def run(self, turn: Turn) -> TurnResult:
        """Answer the turn's batch."""


class OfflineResponder:
    """Used when no OPENAI_API_KEY is set: answers with the client's offline message."""

    async def run(self, turn: Turn) -> TurnResult:
        log.info("llm.offline_reply", extra={"client": turn.client.name, "conversation": turn.conversation.id})
        return TurnResult(reply=turn.client.offline_message)


class OpenAIAgent:
    """Chat Completions with the client's instructions and tools, looping over tool calls up to a bound."""

    def __init__(self, openai: AsyncOpenAI, max_tool_rounds: int) -> None:
        self._openai = openai
        self._max_tool_rounds = max_tool_rounds

    async def run(self, turn: Turn) -> TurnResult:
        client = turn.client
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": client.spec.instructions.system_prompt()},
            *chat_messages(turn.history, turn.batch),
        ]
        tools = client.tools.openai_schemas()
        context = ToolContext(client=client.name, conversation_id=turn.conversation.id,
                              user_key=turn.conversation.user_key, settings=client.settings, now=turn.now)
        steps: list[NewMessage] = []
        prompt_tokens = completion_tokens = 0
        for round_number in range(self._max_tool_rounds + 1):
            options: dict[str, Any] = {}
            if tools:
                # The last round may not call tools, so a turn always ends in words.
                options = {"tools": tools, "tool_choice": "none" if round_number == self._max_tool_rounds else "auto"}
            completion = await self._openai.chat.completions.create(model=client.model, messages=messages, **options)
            usage = completion.usage
            call_prompt = usage.prompt_tokens if usage else 0
            call_completion = usage.completion_tokens if usage else 0
            prompt_tokens += call_prompt
            completion_tokens += call_completion
            answer = completion.choices[0].message
            calls = [call for call in answer.tool_calls or [] if call.type == "function"]
            if not calls or round_number == self._max_tool_rounds:
                return TurnResult(reply=(answer.content or "").strip(), steps=steps,
                                  prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            call_records = [
                {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
                for call in calls
            ]
            step = NewMessage(direction="internal", role="assistant", type="tool_calls", text=answer.content,
                              payload={"tool_calls": call_records},
                              prompt_tokens=call_prompt, completion_tokens=call_completion)
            steps.append(step)
            messages.append({"role": "assistant", "content": answer.content, "tool_calls": call_records})
            for call in calls:
                result = await self._call_tool(turn, context, call.function.name, call.function.arguments)
                steps.append(NewMessage(direction="internal", role="tool", type="tool_result", text=result,
                                        payload={"tool_call_id": call.id, "name": call.function.name}))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise AssertionError("unreachable: the last round always returns")

    async def _call_tool(self, turn: Turn, context: ToolContext, name: str, arguments: str) -> str:
        tool = turn.client.tools.get(name)
        if tool is None:
            log.warning("llm.unknown_tool", extra={"client": turn.client.name, "conversation": turn.conversation.id, "tool": name})
            return f"Error: there is no tool named {name!r}."
        try:
            return await tool.call(arguments, context)
        except Exception as error:  # a broken tool must not sink the turn: the model hears it failed
            log.exception("llm.tool_failed", extra={"client": turn.client.name, "conversation": turn.conversation.id, "tool": name})
            return f"Error: the tool {name} failed ({type(error).__name__})."

