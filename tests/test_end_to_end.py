"""A whole message's journey: signed webhook in, model asked, one reply out through the Graph API."""

from __future__ import annotations

import time

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import new_wamid, text_delivery, wait_for


def test_burst_of_three_gets_one_reply_with_all_three_in_order(live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    now = int(time.time())
    for offset, text in enumerate(["hola", "quería saber", "si abren hoy"]):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", text, timestamp=now + offset)
        assert live_app.post_webhook(delivery, DEMO.secret).status_code == 200

    replies = wait_for(graph.texts, what="a reply")
    wait_for(lambda: live_app.settled(DEMO, "5491155550001"), what="the conversation to settle")

    assert len(replies) == 1
    reply = replies[0]
    assert reply.phone_number_id == DEMO.phone_number_id
    assert reply.token == DEMO.token
    assert reply.body["to"] == "5491155550001"
    assert reply.text == "echo: hola | quería saber | si abren hoy"
    assert len(llm.requests) == 1
    users = [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user"]
    assert users == ["hola", "quería saber", "si abren hoy"]
    assert llm.requests[0]["messages"][0]["role"] == "system"
    assert "Almacén Demo" in llm.requests[0]["messages"][0]["content"]


def test_redelivery_of_the_same_webhook_sends_no_second_reply(live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550002", "hola", wamid=new_wamid())
    assert live_app.post_webhook(delivery, DEMO.secret).json()["stored"] == 1
    wait_for(graph.texts, what="the first reply")
    wait_for(lambda: live_app.settled(DEMO, "5491155550002"), what="the conversation to settle")

    again = live_app.post_webhook(delivery, DEMO.secret)
    assert again.status_code == 200
    assert again.json()["stored"] == 0
    wait_for(lambda: live_app.settled(DEMO, "5491155550002"), what="the conversation to settle")
    assert len(graph.texts()) == 1
    assert len(llm.requests) == 1


def test_tool_call_round_trip(live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    llm.script(Reply(content="Dejame fijarme.", tool_calls=[("business_hours", {})]), Reply(content="Hoy abrimos de 9 a 18."))
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550003", "¿están abiertos?")
    live_app.post_webhook(delivery, DEMO.secret)

    # What the model wrote beside its tool call goes out first, as a person would say it, then the answer.
    replies = wait_for(lambda: graph.texts() if len(graph.texts()) == 2 else None, what="both parts of the reply")
    assert [reply.text for reply in replies] == ["Dejame fijarme.", "Hoy abrimos de 9 a 18."]
    second = llm.requests[1]["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-2]["content"] == "Dejame fijarme."
    assert second[-2]["tool_calls"][0]["function"]["name"] == "business_hours"
    assert second[-1]["role"] == "tool"
    assert "Horarios: lunes: 09:00-18:00" in second[-1]["content"]
    assert llm.requests[0]["tools"][0]["function"]["name"] == "business_hours"

    # The next turn's history keeps the text that came with the tool call, once, where the model wrote it.
    wait_for(lambda: live_app.settled(DEMO, "5491155550003"), what="the conversation to settle")
    live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550003", "gracias"), DEMO.secret)
    wait_for(lambda: len(graph.texts()) == 3, what="the second reply")
    third = llm.requests[2]["messages"]
    assert [m["role"] for m in third[1:]] == ["user", "assistant", "tool", "assistant", "user"]
    assert third[2]["content"] == "Dejame fijarme."


def test_other_client_uses_its_own_prompt_and_token(live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550004", "hola")
    assert live_app.post_webhook(delivery, EMPRENDEMY.secret).status_code == 200

    reply = wait_for(graph.texts, what="a reply")[0]
    assert reply.phone_number_id == EMPRENDEMY.phone_number_id
    assert reply.token == EMPRENDEMY.token
    assert "Emprendemy" in llm.requests[0]["messages"][0]["content"]
    assert "Almacén Demo" not in llm.requests[0]["messages"][0]["content"]
