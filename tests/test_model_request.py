"""The agent's model calls are the requests the OpenAI SDK's `chat.completions.create` would send, key for key."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from openai import AsyncOpenAI

from core.llm.agent import OpenAIAgent, Turn
from core.retry import RetryPolicy
from core.storage.records import StoredMessage
from tests.fakes.openai import FakeOpenAI, Reply
from tests.unit.fakes import T0, conversation, make_client

pytestmark = pytest.mark.anyio


async def lookup(order: str, *, ctx: object) -> str:
    """Find an order by its number."""
    return f"order {order}: shipped"


def stored(n: int, role: str, text: str | None, payload: dict | None = None, direction: str = "in") -> StoredMessage:
    return StoredMessage(id=n, conversation_id=1, wamid=f"wamid.{n}", direction=direction, role=role,  # type: ignore[arg-type]
                         type="text", text=text, payload=payload, status=None, error=None, wa_timestamp=T0,
                         batch_id=None, processed_at=None, prompt_tokens=0, completion_tokens=0, created_at=T0)


async def test_a_turn_with_history_images_and_a_tool_round_sends_what_create_would(llm: FakeOpenAI) -> None:
    base = make_client()
    spec = replace(base.spec, tools=[lookup])
    client = replace(base, spec=spec, toolsets=spec.toolsets())
    history = [stored(1, "user", "¿dónde está mi pedido?"),
               stored(2, "assistant", "Lo busco.", {"tool_calls": [{"id": "c0", "type": "function", "function": {
                   "name": "lookup", "arguments": "{\"order\": \"7\"}"}}]}, "internal"),
               stored(3, "tool", "order 7: shipped", {"tool_call_id": "c0", "name": "lookup"}, "internal"),
               stored(4, "assistant", "Ya salió 🚚", None, "out")]
    batch = [stored(5, "user", "y el 8?"), stored(6, "user", "mirá la foto")]
    turn = Turn(client, conversation(), history, batch, T0, {6: "data:image/jpeg;base64,AAAA"}, "batch-1")
    openai = AsyncOpenAI(api_key="sk-test", base_url=llm.url, max_retries=0)
    agent = OpenAIAgent(openai, max_tool_rounds=1, history_budget=10_000, retry=RetryPolicy(attempts=1))
    llm.script(Reply(tool_calls=[("lookup", {"order": "8"})]), Reply(content="El 8 también salió."))
    try:
        result = await agent.run(turn)
        sent, auth = list(llm.requests), list(llm.auth)
        llm.requests.clear()
        llm.auth.clear()
        llm.script(Reply(tool_calls=[("lookup", {"order": "8"})]), Reply(content="El 8 también salió."))
        for body in sent:
            await openai.chat.completions.create(**body)
    finally:
        await openai.close()

    assert result.reply == "El 8 también salió." and result.prompt_tokens == 22 and result.completion_tokens == 14
    assert [step.text for step in result.steps if step.role == "tool"] == ["order 8: shipped"]
    assert [body["tool_choice"] for body in sent] == ["auto", "none"]  # the last round may not call tools
    # The same JSON, in the same key order, with the same credentials, as the SDK's typed method sends.
    assert [json.dumps(body) for body in sent] == [json.dumps(body) for body in llm.requests]
    assert auth == llm.auth == ["Bearer sk-test"] * 2
