"""How a turn ends when things go right or wrong: offline answers, model failures, refusals from Meta."""

from __future__ import annotations

import logging

import pytest

from clients.demo.prompts import FALLBACK_MESSAGE
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for


def replies_of(app: RunningApp, client, wa_id: str) -> list[dict]:
    """The replies once each has its outcome (a reply is stored `pending` before it is sent); else []."""
    replies = [m for m in app.messages(client, wa_id) if m["direction"] == "out"]
    return replies if all(m["status"] != "pending" for m in replies) else []


def test_sandbox_and_offline_by_default_record_the_offline_message(start_app, graph: FakeGraph):
    env = {"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key}
    app = start_app(env, whatsapp_api_base_url=graph.url, allow_unsigned_webhooks=True)
    assert app.post_webhook(text_delivery("1", DEMO.phone_number_id, "5491155550010", "hola"), None).status_code == 200

    [reply] = wait_for(lambda: replies_of(app, DEMO, "5491155550010"), what="the sandbox reply")
    assert reply["status"] == "sandbox"
    assert reply["wamid"].startswith("sandbox.")
    assert reply["text"].startswith("¡Gracias por escribirnos!")
    assert graph.calls == []
    health = app.api(DEMO, "/health").json()
    assert (health["send_mode"], health["llm"]) == ("sandbox", "offline")


def test_a_model_that_answers_429_twice_then_succeeds_costs_one_reply(start_app, graph: FakeGraph, llm: FakeOpenAI):
    llm.script(Reply(status=429), Reply(status=429))
    app = start_app(DEMO.env(), openai_api_key="sk-test", openai_base_url=llm.url, whatsapp_api_base_url=graph.url,
                    llm_retry_base_seconds=0.05)
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550011", "hola"), DEMO.secret)

    [reply] = wait_for(graph.texts, what="the reply after the retries")
    wait_for(lambda: all(m["processed_at"] for m in app.messages(DEMO, "5491155550011")), what="the turn to end")
    assert reply.text == "echo: hola"
    assert len(llm.requests) == 3
    [conversation] = app.api(DEMO, "/conversations").json()
    assert conversation["needs_attention"] is False


def test_a_model_down_for_good_yields_the_fallback_once_and_the_flag(start_app, graph: FakeGraph, llm: FakeOpenAI,
                                                                     caplog: pytest.LogCaptureFixture):
    llm.respond = lambda body: Reply(status=503)
    app = start_app(DEMO.env(), openai_api_key="sk-test", openai_base_url=llm.url, whatsapp_api_base_url=graph.url,
                    llm_retry_base_seconds=0.05, llm_retry_attempts=3)
    with caplog.at_level(logging.ERROR):
        app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550015", "hola"), DEMO.secret)
        [reply] = wait_for(graph.texts, what="the fallback message")
        [conversation] = wait_for(lambda: [c for c in app.api(DEMO, "/conversations").json() if c["due_at"] is None],
                                  what="the turn to end")
    assert reply.text == FALLBACK_MESSAGE
    assert len(llm.requests) == 3
    assert conversation["needs_attention"] is True
    assert "model could not answer" in conversation["attention_reason"]
    failure = next(r for r in caplog.records if r.getMessage() == "llm.unavailable")
    assert failure.client == "demo" and failure.conversation == conversation["id"]
    assert len(graph.texts()) == 1


def test_outside_the_window_the_reply_is_stored_failed_and_not_retried(live_app: RunningApp, graph: FakeGraph,
                                                                       llm: FakeOpenAI):
    graph.fail_next(400, 131047, "Re-engagement message")
    live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550012", "hola"), DEMO.secret)

    [reply] = wait_for(lambda: replies_of(live_app, DEMO, "5491155550012"), what="the failed reply to be stored")
    assert reply["status"] == "failed"
    assert reply["error"]["code"] == 131047
    assert len(graph.texts()) == 1
    assert len(llm.requests) == 1
    [conversation] = live_app.api(DEMO, "/conversations").json()
    assert conversation["needs_attention"] is True
    assert "24 h window" in conversation["attention_reason"]


def test_statuses_from_meta_move_the_reply_forward(live_app: RunningApp, graph: FakeGraph):
    live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550013", "hola"), DEMO.secret)
    [reply] = wait_for(lambda: replies_of(live_app, DEMO, "5491155550013"), what="the reply")
    assert reply["status"] == "sent"

    def status_delivery(name: str) -> dict:
        return {"object": "whatsapp_business_account", "entry": [{"id": DEMO.waba_id, "changes": [{"field": "messages",
                "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": DEMO.phone_number_id},
                          "statuses": [{"id": reply["wamid"], "status": name, "timestamp": "1795322400",
                                        "recipient_id": "5491155550013"}]}}]}]}

    for name in ("read", "delivered", "sent"):
        assert live_app.post_webhook(status_delivery(name), DEMO.secret).status_code == 200
    [after] = replies_of(live_app, DEMO, "5491155550013")
    assert after["status"] == "read"


def test_a_conversation_is_marked_read_with_typing_before_the_model_is_asked(live_app: RunningApp, graph: FakeGraph):
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550014", "hola")
    wamid = delivery["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    live_app.post_webhook(delivery, EMPRENDEMY.secret)
    wait_for(graph.texts, what="the reply")
    read = [c for c in graph.calls if c.body.get("status") == "read"]
    assert read[0].body == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
                            "typing_indicator": {"type": "text"}}
    assert graph.calls.index(read[0]) < graph.calls.index(graph.texts()[0])
