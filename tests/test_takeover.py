"""Human takeover through the running app: the bot stays silent, operators write through WhatsApp, the bot comes back."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

# ---------------------------------------------------------------- helpers


def settings_for(graph: FakeGraph, llm: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    return {"openai_api_key": "sk-test", "openai_base_url": llm.url, "whatsapp_api_base_url": graph.url,
            "whatsapp_pair_interval_seconds": 0.02, "whatsapp_retry_base_seconds": 0.05,
            "llm_retry_base_seconds": 0.05, **overrides}


def start(start_app, graph: FakeGraph, llm: FakeOpenAI, env: dict[str, str] | None = None,
          **overrides: Any) -> RunningApp:
    return start_app({**DEMO.env(), **EMPRENDEMY.env(), **(env or {})}, **settings_for(graph, llm, **overrides))


def post(app: RunningApp, client: ClientIds, path: str, json: dict | None = None,
         key: str | None = "default") -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {client.api_key if key == 'default' else key}"}
    return app.http.post(f"{app.url}/api/v1/{client.name}{path}", json=json, headers=headers)


def write(app: RunningApp, client: ClientIds, wa_id: str, text: str, timestamp: int | None = None) -> None:
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, text, timestamp=timestamp)
    assert app.post_webhook(delivery, client.secret).status_code == 200


def texts_to(graph: FakeGraph, wa_id: str) -> list[str]:
    return [call.text for call in graph.texts() if call.body.get("to") == wa_id]


def answered_once(app: RunningApp, graph: FakeGraph, client: ClientIds, wa_id: str, text: str) -> int:
    """Write, wait for the bot's reply, return the conversation id."""
    before = len(texts_to(graph, wa_id))
    write(app, client, wa_id, text)
    wait_for(lambda: len(texts_to(graph, wa_id)) > before and app.settled(client, wa_id), what="the bot's reply")
    return app.conversation(client, wa_id)["id"]


def barrier(app: RunningApp, graph: FakeGraph, wa_id: str) -> None:
    """Another conversation's full turn: anything the bot would have done earlier has had its chance."""
    write(app, EMPRENDEMY, wa_id, "¿hola?")
    wait_for(lambda: texts_to(graph, wa_id), what="the barrier conversation's reply")


def last_user_message(body: dict) -> Reply:
    return Reply(content="re: " + [m["content"] for m in body["messages"] if m["role"] == "user"][-1])


# ---------------------------------------------------------------- 1. takeover silences, release restores

def test_takeover_silences_the_bot_and_release_restores_it(start_app, graph: FakeGraph, llm: FakeOpenAI):
    llm.respond = last_user_message
    app = start(start_app, graph, llm)
    wa_id = "5491155552001"
    conversation_id = answered_once(app, graph, DEMO, wa_id, "hola")

    taken = post(app, DEMO, f"/conversations/{conversation_id}/takeover")
    assert taken.status_code == 200
    assert taken.json()["mode"] == "human"
    write(app, DEMO, wa_id, "¿hay alguien?")
    write(app, DEMO, wa_id, "necesito hablar con una persona")
    barrier(app, graph, "5491155552091")
    assert texts_to(graph, wa_id) == ["re: hola"]
    assert len([r for r in llm.requests if "Almacén Demo" in r["messages"][0]["content"]]) == 1
    silent = [m for m in app.messages(DEMO, wa_id) if m["text"] in {"¿hay alguien?", "necesito hablar con una persona"}]
    assert len(silent) == 2
    assert all(m["processed_at"] and m["batch_id"] is None for m in silent)  # stored, handled, never a bot turn
    assert app.conversation(DEMO, wa_id)["due_at"] is None

    released = post(app, DEMO, f"/conversations/{conversation_id}/release")
    assert released.status_code == 200
    assert released.json()["mode"] == "bot"
    write(app, DEMO, wa_id, "¿siguen ahí?")
    wait_for(lambda: len(texts_to(graph, wa_id)) == 2 and app.settled(DEMO, wa_id), what="the reply after release")
    assert texts_to(graph, wa_id) == ["re: hola", "re: ¿siguen ahí?"]
    messages = app.messages(DEMO, wa_id)
    [new] = [m for m in messages if m["text"] == "¿siguen ahí?"]
    [reply] = [m for m in messages if m["text"] == "re: ¿siguen ahí?"]
    assert new["batch_id"] == reply["batch_id"] is not None
    assert all(m["batch_id"] is None for m in messages if m["text"] in {"¿hay alguien?", "necesito hablar con una persona"})


# ---------------------------------------------------------------- 2. takeover while the model thinks

def test_a_takeover_while_the_model_is_thinking_drops_the_reply(start_app, graph: FakeGraph, llm: FakeOpenAI):
    llm.script(Reply(content="Me fijo el horario.", tool_calls=[("business_hours", {})]),
               Reply(content="Abrimos de 9 a 18."))
    app = start(start_app, graph, llm)
    wa_id = "5491155552002"
    llm.gate.clear()
    try:
        write(app, DEMO, wa_id, "¿abren hoy?")
        wait_for(lambda: len(llm.requests) == 1, what="the model to be asked")
        conversation_id = app.conversation(DEMO, wa_id)["id"]
        assert post(app, DEMO, f"/conversations/{conversation_id}/takeover").status_code == 200
    finally:
        llm.gate.set()

    # The turn ends: its tool steps are kept (what the model did), its reply is not.
    wait_for(lambda: [m for m in app.messages(DEMO, wa_id) if m["direction"] == "internal"],
             what="the turn to be saved")
    wait_for(lambda: len(llm.requests) == 2, what="the turn's second model call")
    barrier(app, graph, "5491155552092")
    assert texts_to(graph, wa_id) == []
    messages = app.messages(DEMO, wa_id)
    assert [m for m in messages if m["direction"] == "out"] == []
    assert "Abrimos de 9 a 18." not in [m["text"] for m in messages]
    assert app.conversation(DEMO, wa_id)["mode"] == "human"


# ---------------------------------------------------------------- 3. operator messages

def test_an_operator_message_goes_through_whatsapp_and_into_the_models_history(start_app, graph: FakeGraph,
                                                                                llm: FakeOpenAI):
    app = start(start_app, graph, llm)
    wa_id = "5491155552003"
    conversation_id = answered_once(app, graph, DEMO, wa_id, "hola")
    assert post(app, DEMO, f"/conversations/{conversation_id}/takeover").status_code == 200

    text = "Hola, soy Juan del almacén: mañana te llevo el pedido."
    answer = post(app, DEMO, f"/conversations/{conversation_id}/messages", {"text": text})
    assert answer.status_code == 201
    body = answer.json()
    assert (body["role"], body["direction"], body["status"], body["text"]) == ("operator", "out", "sent", text)
    sent = graph.texts()[-1]
    assert (sent.text, sent.token, sent.phone_number_id, sent.body["to"]) == (text, DEMO.token, DEMO.phone_number_id,
                                                                              wa_id)
    assert body["wamid"] and body["wamid"].startswith("wamid.FAKE")
    stored = [m for m in app.messages(DEMO, wa_id) if m["role"] == "operator"]
    assert [(m["id"], m["status"], m["wamid"]) for m in stored] == [(body["id"], "sent", body["wamid"])]

    assert post(app, DEMO, f"/conversations/{conversation_id}/release").status_code == 200
    write(app, DEMO, wa_id, "genial, gracias")
    wait_for(lambda: len(llm.requests) == 2 and app.settled(DEMO, wa_id), what="the bot's next turn")
    history = llm.requests[1]["messages"][1:]
    assert [m["role"] for m in history] == ["user", "assistant", "assistant", "user"]
    operator = history[2]
    assert text in operator["content"] and operator["content"] != text  # marked as written by a person
    assert history[-1] == {"role": "user", "content": "genial, gracias"}


def test_an_operator_message_outside_the_24h_window_is_refused_before_sending(start_app, graph: FakeGraph,
                                                                             llm: FakeOpenAI):
    app = start(start_app, graph, llm, debounce_seconds=30)  # the bot does not get to answer before the takeover
    wa_id = "5491155552004"
    write(app, DEMO, wa_id, "hola, ¿sigue en pie lo de ayer?", timestamp=int(time.time()) - 25 * 3600)
    conversation_id = app.conversation(DEMO, wa_id)["id"]
    assert post(app, DEMO, f"/conversations/{conversation_id}/takeover").status_code == 200

    answer = post(app, DEMO, f"/conversations/{conversation_id}/messages", {"text": "¡Hola! Sí, te esperamos."})
    assert answer.status_code == 422
    assert re.search(r"24\s*h", answer.json()["detail"])  # the reason, in words
    assert graph.texts() == []
    assert [m for m in app.messages(DEMO, wa_id) if m["status"] == "sent"] == []


def test_an_operator_message_refused_by_whatsapp_answers_502_and_is_stored_failed(start_app, graph: FakeGraph,
                                                                                 llm: FakeOpenAI):
    app = start(start_app, graph, llm)
    wa_id = "5491155552005"
    conversation_id = answered_once(app, graph, DEMO, wa_id, "hola")
    graph.fail_next(400, 131026, "Message undeliverable")

    answer = post(app, DEMO, f"/conversations/{conversation_id}/messages", {"text": "¿Seguís ahí?"})
    assert answer.status_code == 502
    assert "Message undeliverable" in answer.json()["detail"]
    assert texts_to(graph, wa_id) == ["echo: hola", "¿Seguís ahí?"]  # one attempt: not a transient error
    [stored] = [m for m in app.messages(DEMO, wa_id) if m["role"] == "operator"]
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == 131026
    assert stored["wamid"] is None


# ---------------------------------------------------------------- 4. idle takeovers go back to the bot

def test_an_idle_takeover_goes_back_to_the_bot(start_app, graph: FakeGraph, llm: FakeOpenAI):
    app = start(start_app, graph, llm, {"DEMO_HUMAN_IDLE_MINUTES": "0.01"}, housekeeping_seconds=0.1,
                scheduler_poll_seconds=0.1)
    wa_id = "5491155552006"
    conversation_id = answered_once(app, graph, DEMO, wa_id, "hola")

    taken_at = time.monotonic()
    assert post(app, DEMO, f"/conversations/{conversation_id}/takeover").json()["mode"] == "human"
    wait_for(lambda: app.conversation(DEMO, wa_id)["mode"] == "bot", timeout=10, what="the bot to take it back")
    assert time.monotonic() - taken_at >= 0.5  # not before the client's idle time (0.6 s)

    write(app, DEMO, wa_id, "¿hola?")
    wait_for(lambda: len(texts_to(graph, wa_id)) == 2 and app.settled(DEMO, wa_id), what="the bot's answer")
    assert texts_to(graph, wa_id) == ["echo: hola", "echo: ¿hola?"]


# ---------------------------------------------------------------- 5. auth and isolation

def test_takeover_endpoints_need_the_key_and_see_only_the_clients_own_conversations(start_app, graph: FakeGraph,
                                                                                      llm: FakeOpenAI):
    app = start(start_app, graph, llm)
    wa_id = "5491155552007"
    conversation_id = answered_once(app, graph, DEMO, wa_id, "hola")
    base = f"/conversations/{conversation_id}"
    calls = [(f"{base}/takeover", None), (f"{base}/release", None), (f"{base}/messages", {"text": "hola"})]

    for path, body in calls:
        assert post(app, DEMO, path, body, key=None).status_code == 401
        assert post(app, DEMO, path, body, key="wrong-key").status_code == 401
        assert post(app, DEMO, path, body, key=EMPRENDEMY.api_key).status_code == 401
        # Emprendemy's own key on its own API: demo's conversation does not exist there.
        assert post(app, EMPRENDEMY, path, body).status_code == 404
        assert post(app, DEMO, path.replace(str(conversation_id), "999999"), body).status_code == 404

    assert post(app, DEMO, f"{base}/messages", {"text": ""}).status_code == 422
    assert post(app, DEMO, f"{base}/messages", {}).status_code == 422
    # A lone surrogate, as JSON's escape: refused, and the 422 that quotes it is still written (it was a 500).
    refused = app.http.post(f"{app.url}/api/v1/{DEMO.name}{base}/messages", content=b'{"text": "a\\ud800b"}',
                            headers={"Authorization": f"Bearer {DEMO.api_key}", "Content-Type": "application/json"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "text"
    assert app.conversation(DEMO, wa_id)["mode"] == "bot"
    assert texts_to(graph, wa_id) == ["echo: hola"]
