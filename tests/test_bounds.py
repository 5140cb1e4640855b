"""Bounds per turn through the real app: what one person's messages can make the service do is limited, and each
limit that is hit is logged and kept on the conversation (issue 9, findings 4 and 5)."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import new_wamid, wait_for


def start(start_app: Any, graph: FakeGraph, llm: FakeOpenAI, **bounds: Any) -> RunningApp:
    llm.category = None  # demo classifies: the stand-in answers the classifier from the script too
    return start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url, **bounds)


def burst(app: RunningApp, wa_id: str, texts: list[str]) -> None:
    """Several messages from one person in one delivery, as Meta sends a burst."""
    now = int(time.time())
    messages = [{"from": wa_id, "id": new_wamid(), "timestamp": str(now + n), "type": "text", "text": {"body": text}}
                for n, text in enumerate(texts)]
    body = {"object": "whatsapp_business_account", "entry": [{"id": EMPRENDEMY.waba_id, "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"phone_number_id": EMPRENDEMY.phone_number_id},
                                       "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
                                       "messages": messages}}]}]}
    assert app.post_webhook(body, EMPRENDEMY.secret).json()["stored"] == len(texts)


def notes(app: RunningApp, wa_id: str) -> list[str]:
    return [m["text"] for m in app.messages(EMPRENDEMY, wa_id) if m["type"] == "limit"]


def test_tool_calls_over_the_round_bound_are_answered_not_run(start_app, graph: FakeGraph, llm: FakeOpenAI):
    app = start(start_app, graph, llm, max_tool_calls_per_round=2)
    llm.script(Reply(tool_calls=[("list_courses", {})] * 5), Reply(content="Estos son los cursos."))
    burst(app, "5491155553001", ["¿qué cursos hay?"])
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155553001"), what="the turn")
    results = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == 5  # every call has its answer, as the API requires
    assert sum(r.startswith("Error: not run") for r in results) == 3
    assert notes(app, "5491155553001") == ["limit reached: tool calls per round: 2 (MAX_TOOL_CALLS_PER_ROUND)"]


def test_tool_calls_over_the_turn_bound_are_answered_not_run(start_app, graph: FakeGraph, llm: FakeOpenAI):
    app = start(start_app, graph, llm, max_tool_calls_per_turn=3)
    llm.script(*[Reply(tool_calls=[("list_courses", {})] * 2)] * 3, Reply(content="Listo."))
    burst(app, "5491155553002", ["¿qué cursos hay?"])
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155553002"), what="the turn")
    results = [m["content"] for m in llm.requests[3]["messages"] if m["role"] == "tool"]
    assert [r.startswith("Error: not run") for r in results] == [False, False, False, True, True, True]
    assert notes(app, "5491155553002") == ["limit reached: tool calls per turn: 3 (MAX_TOOL_CALLS_PER_TURN)"]


def test_a_huge_burst_reaches_the_model_as_its_latest_messages_and_one_line_for_the_rest(
        start_app, graph: FakeGraph, llm: FakeOpenAI):
    app = start(start_app, graph, llm, max_batch_messages=10)
    burst(app, "5491155553003", [f"mensaje {n}" for n in range(60)])
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155553003"), what="the turn")
    [request] = llm.requests
    users = [m["content"] for m in request["messages"] if m["role"] == "user"]
    assert users == ["[51 earlier messages of this burst are not shown; the first said: «mensaje 0»]",
                     *[f"mensaje {n}" for n in range(51, 60)]]
    assert all(m["processed_at"] for m in app.messages(EMPRENDEMY, "5491155553003") if m["direction"] == "in")
    assert notes(app, "5491155553003") == ["limit reached: messages per model call: 10 (MAX_BATCH_MESSAGES)"]


def test_a_reply_over_the_character_bound_is_cut_at_a_sentence(start_app, graph: FakeGraph, llm: FakeOpenAI):
    app = start(start_app, graph, llm, max_reply_characters=200)
    llm.script(Reply(content="Una frase corta. " * 100))
    burst(app, "5491155553004", ["contame todo"])
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155553004"), what="the turn")
    [sent] = [call.text for call in graph.texts()]
    assert len(sent) <= 200 and sent.endswith("Una frase corta.…")
    assert notes(app, "5491155553004") == ["limit reached: reply characters: 200 (MAX_REPLY_CHARACTERS)"]
