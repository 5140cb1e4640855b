"""The conversation engine through the running app: ordering, coalescing, media, sending, fairness, tokens, prompts."""

from __future__ import annotations

import asyncio
import base64
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.fakes.server import serve
from tests.support import text_delivery, wait_for

MAX_TEXT = 4096


class HoldingOpenAI(FakeOpenAI):
    """The OpenAI stand-in, plus a hold that makes only the requests `held_when` picks wait (the gate is global)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.hold.set()
        self.held_when: Callable[[dict[str, Any]], bool] = lambda body: False
        self.held: list[dict[str, Any]] = []

    async def _completions(self, request):  # type: ignore[override]
        body = await request.json()  # Starlette caches the body: the parent reads it again
        if not self.hold.is_set() and self.held_when(body):
            self.held.append(body)
            await asyncio.to_thread(self.hold.wait, 60)
        return await super()._completions(request)


@pytest.fixture
def llm() -> Iterator[HoldingOpenAI]:
    """Overrides conftest's stand-in (same behaviour unless the hold is used); start_app still outlives it."""
    fake = HoldingOpenAI()
    with serve(fake.app) as url:
        fake.url = url + "/v1"  # type: ignore[attr-defined]
        try:
            yield fake
        finally:
            fake.hold.set()
            fake.gate.set()


# ---------------------------------------------------------------- helpers

def both_clients(graph: FakeGraph, llm: FakeOpenAI, **overrides: Any) -> tuple[dict[str, str], dict[str, Any]]:
    settings = {"openai_api_key": "sk-test", "openai_base_url": llm.url, "whatsapp_api_base_url": graph.url,
                "whatsapp_pair_interval_seconds": 0.02, "whatsapp_retry_base_seconds": 0.05,
                "llm_retry_base_seconds": 0.05, **overrides}
    return {**DEMO.env(), **EMPRENDEMY.env()}, settings


def user_contents(request: dict) -> list[Any]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def texts_to(graph: FakeGraph, wa_id: str) -> list[str]:
    return [call.text for call in graph.texts() if call.body.get("to") == wa_id]


def media_delivery(client: ClientIds, wa_id: str, kind: str, media: dict[str, Any]) -> tuple[dict, str]:
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, "unused")
    message = delivery["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message["type"] = kind
    message[kind] = media
    return delivery, message["id"]


def wamid_of(delivery: dict) -> str:
    return delivery["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


def last_user_reply(body: dict) -> Reply:
    return Reply(content="re: " + str(user_contents(body)[-1]))


# ---------------------------------------------------------------- 1. ordering

def test_five_messages_delivered_shuffled_reach_the_model_in_timestamp_order(start_app, graph: FakeGraph,
                                                                              llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, debounce_seconds=1.0)
    app = start_app(env, **settings)
    wa_id = "5491155551001"
    now = int(time.time())
    words = ["uno", "dos", "tres", "cuatro", "cinco"]
    order = [3, 0, 4, 1, 2]
    for index in order:
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, words[index], timestamp=now - 10 + index)
        assert app.post_webhook(delivery, DEMO.secret).status_code == 200

    wait_for(lambda: texts_to(graph, wa_id), what="the reply")
    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    assert len(llm.requests) == 1
    assert user_contents(llm.requests[0]) == words
    assert texts_to(graph, wa_id) == ["echo: uno | dos | tres | cuatro | cinco"]
    stored = [m["text"] for m in app.messages(DEMO, wa_id) if m["direction"] == "in"]
    assert stored == words


# ---------------------------------------------------------------- 2. a message arriving mid-answer

def test_a_message_arriving_while_the_first_is_answered_gets_its_own_answer_after(start_app, graph: FakeGraph,
                                                                                   llm: FakeOpenAI):
    env, settings = both_clients(graph, llm)
    app = start_app(env, **settings)
    wa_id = "5491155551002"
    now = int(time.time())
    llm.gate.clear()
    try:
        app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "primero", timestamp=now - 2),
                         DEMO.secret)
        wait_for(lambda: len(llm.requests) == 1, what="the first model request")
        second = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "segundo", timestamp=now - 1)
        assert app.post_webhook(second, DEMO.secret).status_code == 200
    finally:
        llm.gate.set()

    wait_for(lambda: len(texts_to(graph, wa_id)) == 2, what="two replies")
    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    assert texts_to(graph, wa_id) == ["echo: primero", "echo: segundo"]
    assert len(llm.requests) == 2
    assert user_contents(llm.requests[0]) == ["primero"]
    second = [(m["role"], m["content"]) for m in llm.requests[1]["messages"][1:]]
    assert second == [("user", "primero"), ("assistant", "echo: primero"), ("user", "segundo")]
    timeline = [(m["role"], m["text"]) for m in app.messages(DEMO, wa_id)]
    assert timeline == [("user", "primero"), ("assistant", "echo: primero"), ("user", "segundo"),
                        ("assistant", "echo: segundo")]


# ---------------------------------------------------------------- 3. voice notes

def test_a_voice_note_becomes_its_transcript_in_the_models_input(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, openai_transcription_model="transcriber-test")
    app = start_app(env, **settings)
    wa_id = "5491155551003"
    delivery, _ = media_delivery(DEMO, wa_id, "audio",
                                 {"mime_type": "audio/ogg; codecs=opus", "id": "7001", "voice": True})
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200

    wait_for(lambda: texts_to(graph, wa_id), what="the reply")
    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    expected = f"[voice note] {llm.transcript}"
    assert user_contents(llm.requests[0]) == [expected]
    assert texts_to(graph, wa_id) == [f"echo: {expected}"]
    [inbound] = [m for m in app.messages(DEMO, wa_id) if m["direction"] == "in"]
    assert inbound["text"] == expected
    assert graph.media_downloads == ["7001"]
    [transcription] = llm.transcriptions
    assert transcription["filename"].endswith(".ogg")
    assert transcription["model"] == "transcriber-test"
    assert transcription["content"] == b"OggS-fake-voice-7001"


def test_a_voice_note_that_cannot_be_downloaded_degrades_to_a_note(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, media_max_bytes=1024)
    graph.media["7002"] = (b"O" * 5000, "audio/ogg")  # over the cap: the download is refused
    app = start_app(env, **settings)
    wa_id = "5491155551004"
    delivery, _ = media_delivery(DEMO, wa_id, "audio", {"mime_type": "audio/ogg", "id": "7002", "voice": True})
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200

    wait_for(lambda: texts_to(graph, wa_id), what="the reply")
    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    [content] = user_contents(llm.requests[0])
    assert content.startswith("[voice note]")
    assert "download" in content
    assert llm.transcriptions == []
    assert len(texts_to(graph, wa_id)) == 1
    [inbound] = [m for m in app.messages(DEMO, wa_id) if m["direction"] == "in"]
    assert inbound["text"] == content
    [conversation] = [c for c in app.api(DEMO, "/conversations").json() if c["user_key"] == wa_id]
    assert conversation["needs_attention"] is False


# ---------------------------------------------------------------- 4. images

@pytest.mark.parametrize("vision", [True, False])
def test_an_image_reaches_the_model_as_image_input_only_when_the_client_has_vision(
        start_app, graph: FakeGraph, llm: FakeOpenAI, vision: bool):
    env, settings = both_clients(graph, llm)
    if vision:
        env["DEMO_VISION"] = "true"
    picture = b"\xff\xd8\xff\xe0 a tiny jpeg"
    graph.media["8001"] = (picture, "image/jpeg")
    llm.respond = lambda body: Reply(content="¡Gracias por la foto!")
    app = start_app(env, **settings)
    wa_id = "5491155551005"
    delivery, _ = media_delivery(DEMO, wa_id, "image",
                                 {"mime_type": "image/jpeg", "id": "8001", "caption": "Así quedó la factura"})
    app.post_webhook(delivery, DEMO.secret)

    wait_for(lambda: texts_to(graph, wa_id), what="the reply")
    [content] = user_contents(llm.requests[0])
    if vision:
        assert content == [
            {"type": "text", "text": "[image] Así quedó la factura"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(picture).decode()}},
        ]
        assert graph.media_downloads == ["8001"]
    else:
        assert content == "[image] Así quedó la factura"
        assert graph.media_downloads == ["8001"]  # downloaded once all the same: received media are archived
    assert texts_to(graph, wa_id) == ["¡Gracias por la foto!"]


# ---------------------------------------------------------------- 5. Graph errors on send

@pytest.mark.parametrize(("status", "code"), [(429, 130429), (400, 131056)])
def test_a_rate_limited_send_is_retried_and_delivered_once(start_app, graph: FakeGraph, llm: FakeOpenAI,
                                                           status: int, code: int):
    env, settings = both_clients(graph, llm)
    app = start_app(env, **settings)
    wa_id = "5491155551006"
    graph.fail_next(status, code, "rate limited")
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "hola"), DEMO.secret)

    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    assert texts_to(graph, wa_id) == ["echo: hola", "echo: hola"]  # the refused attempt, then the one delivered
    [reply] = [m for m in app.messages(DEMO, wa_id) if m["direction"] == "out"]
    assert reply["status"] == "sent"
    assert reply["wamid"].startswith("wamid.FAKE")
    assert reply["error"] is None
    assert len(llm.requests) == 1
    assert app.conversation(DEMO, wa_id)["needs_attention"] is False


def test_an_invalid_token_is_not_retried_and_flags_the_conversation(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm)
    app = start_app(env, **settings)
    wa_id = "5491155551007"
    graph.fail_next(401, 190, "Error validating access token")
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "hola"), DEMO.secret)

    [reply] = wait_for(lambda: [m for m in app.messages(DEMO, wa_id)
                                if m["direction"] == "out" and m["status"] != "pending"], what="the refused reply")
    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    assert reply["status"] == "failed"
    assert reply["error"]["code"] == 190
    assert reply["wamid"] is None
    # A barrier: another conversation's whole turn, after which a retry of the refused send would have shown.
    app.post_webhook(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155551099", "hola"),
                     EMPRENDEMY.secret)
    wait_for(lambda: texts_to(graph, "5491155551099"), what="the barrier reply")
    assert texts_to(graph, wa_id) == ["echo: hola"]
    conversation = app.conversation(DEMO, wa_id)
    assert conversation["needs_attention"] is True
    assert "190" in conversation["attention_reason"] or "token" in conversation["attention_reason"].lower()


# ---------------------------------------------------------------- 6. long answers

def test_a_long_answer_is_sent_in_parts_in_order_with_whatsapp_formatting(start_app, graph: FakeGraph,
                                                                         llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, max_reply_characters=20_000)
    paragraphs = [f"**Parte {n}**: " + " ".join(f"frase {n}.{i} del catálogo." for i in range(60))
                  for n in range(1, 10)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 2 * MAX_TEXT
    llm.script(Reply(content=answer))
    app = start_app(env, **settings)
    wa_id = "5491155551008"
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "mandame el catálogo"), DEMO.secret)

    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    sent = texts_to(graph, wa_id)
    assert len(sent) >= 3
    assert all(len(part) <= MAX_TEXT for part in sent)
    assert all("**" not in part for part in sent)
    expected = "\n\n".join(p.replace(f"**Parte {n}**", f"*Parte {n}*") for n, p in enumerate(paragraphs, start=1))
    assert "\n\n".join(sent) == expected  # in order, nothing lost, cut only between paragraphs
    replies = [m for m in app.messages(DEMO, wa_id) if m["direction"] == "out"]
    assert [m["text"] for m in replies] == sent
    assert {m["status"] for m in replies} == {"sent"}
    assert len({m["wamid"] for m in replies}) == len(replies)


# ---------------------------------------------------------------- 7. typing indicator

def test_the_typing_indicator_is_refreshed_during_a_long_turn(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, typing_refresh_seconds=0.1)
    app = start_app(env, **settings)
    wa_id = "5491155551009"
    now = int(time.time())
    first = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "hola", timestamp=now - 2)
    last = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "¿abren hoy?", timestamp=now - 1)

    def typing_calls() -> list:
        return [c for c in graph.calls if c.body.get("status") == "read" and c.body.get("typing_indicator")]

    llm.gate.clear()
    try:
        app.post_webhook(last, DEMO.secret)  # delivered first, written last
        app.post_webhook(first, DEMO.secret)
        wait_for(lambda: len(typing_calls()) >= 3, what="the typing indicator to be refreshed")
        assert texts_to(graph, wa_id) == []
        assert len(llm.requests) == 1
    finally:
        llm.gate.set()

    wait_for(lambda: app.settled(DEMO, wa_id), what="the conversation to settle")
    assert texts_to(graph, wa_id) == ["echo: hola | ¿abren hoy?"]
    calls = typing_calls()
    assert {c.body["message_id"] for c in calls} == {wamid_of(last)}
    assert {(c.phone_number_id, c.token) for c in calls} == {(DEMO.phone_number_id, DEMO.token)}
    assert len(llm.requests) == 1


# ---------------------------------------------------------------- 8. fairness between clients

def test_one_clients_hanging_model_does_not_starve_another_client(start_app, graph: FakeGraph, llm: HoldingOpenAI):
    env, settings = both_clients(graph, llm, client_concurrency=2, scheduler_concurrency=3)
    app = start_app(env, **settings)
    llm.held_when = lambda body: "Almacén Demo" in body["messages"][0]["content"]
    llm.hold.clear()
    demo_users = ["5491155551010", "5491155551011", "5491155551012"]
    for wa_id in demo_users:
        app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "hola"), DEMO.secret)
    wait_for(lambda: len(llm.held) == 2, what="two demo turns waiting on the model")

    app.post_webhook(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155551013", "hola"),
                     EMPRENDEMY.secret)
    try:
        wait_for(lambda: texts_to(graph, "5491155551013"), timeout=30, what="emprendemy's reply")
        assert not llm.hold.is_set()
        assert len(llm.held) == 2  # demo's third turn waits for a share, it does not take the last slot
        assert [call.phone_number_id for call in graph.texts()] == [EMPRENDEMY.phone_number_id]
    finally:
        llm.hold.set()
    for wa_id in demo_users:
        wait_for(lambda user=wa_id: app.settled(DEMO, user), what=f"demo conversation {wa_id} to settle")
        assert texts_to(graph, wa_id) == ["echo: hola"]


# ---------------------------------------------------------------- 9. token usage

def test_token_usage_is_stored_per_call_and_summed_per_conversation(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm)
    app = start_app(env, **settings)
    wa_id = "5491155551014"
    llm.script(Reply(content="Me fijo.", tool_calls=[("business_hours", {})]), Reply(content="Abrimos a las 9."))
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "¿abren?"), DEMO.secret)
    wait_for(lambda: app.settled(DEMO, wa_id), what="the first turn")

    # demo's instructions are classified: the classifier call's tokens (11/7) go on the reply with the final call's.
    usage = [(m["direction"], m["role"], m["prompt_tokens"], m["completion_tokens"]) for m in app.messages(DEMO, wa_id)]
    # "Me fijo." (written beside the tool call) is sent too, carrying no tokens: its call's are on the step.
    assert usage == [("in", "user", 0, 0), ("internal", "assistant", 11, 7), ("internal", "tool", 0, 0),
                     ("out", "assistant", 0, 0), ("out", "assistant", 22, 14)]
    conversation = app.conversation(DEMO, wa_id)
    assert (conversation["prompt_tokens"], conversation["completion_tokens"]) == (33, 21)

    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "gracias"), DEMO.secret)
    wait_for(lambda: len(texts_to(graph, wa_id)) == 3 and app.settled(DEMO, wa_id), what="the second turn")
    messages = app.messages(DEMO, wa_id)
    assert (messages[-1]["prompt_tokens"], messages[-1]["completion_tokens"]) == (22, 14)
    conversation = app.conversation(DEMO, wa_id)
    assert conversation["prompt_tokens"] == sum(m["prompt_tokens"] for m in messages) == 55
    assert conversation["completion_tokens"] == sum(m["completion_tokens"] for m in messages) == 35


# ---------------------------------------------------------------- 10. per-client debounce

def test_a_clients_own_debounce_overrides_the_global_one(start_app, graph: FakeGraph, llm: FakeOpenAI):
    env, settings = both_clients(graph, llm, debounce_seconds=600.0, debounce_max_seconds=900.0,
                                 scheduler_poll_seconds=0.2)
    env["DEMO_DEBOUNCE_SECONDS"] = "0.2"
    app = start_app(env, **settings)
    app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155551015", "hola"), DEMO.secret)
    app.post_webhook(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155551016", "hola"),
                     EMPRENDEMY.secret)

    wait_for(lambda: texts_to(graph, "5491155551015"), what="demo's quick reply")
    # The other client keeps the global debounce: its message is due 600 s after it arrived, so still unanswered.
    other = app.conversation(EMPRENDEMY, "5491155551016")
    [message] = app.messages(EMPRENDEMY, "5491155551016")
    settle = datetime.fromisoformat(other["due_at"]) - datetime.fromisoformat(message["created_at"])
    assert settle.total_seconds() == pytest.approx(600.0, abs=1.0)
    assert texts_to(graph, "5491155551016") == []


# ---------------------------------------------------------------- 11. classified instructions

SHOP = ClientIds("shop", "1003", "2003", "shop-token", "shop-secret", "shop-key")

SHOP_CLIENT = '''
from core.clients import ClientSpec
from core.llm.instructions import Category, ClassifiedPrompts


def list_products() -> str:
    """List the products on sale."""
    return "mate, yerba, bombilla"


def track_order(order_id: str) -> str:
    """Tell where an order is."""
    return f"order {order_id} is on its way"


def shop_phone() -> str:
    """The shop's phone number."""
    return "+54 11 0000-0000"


client = ClientSpec(
    name="shop",
    instructions=ClassifiedPrompts(
        base="You are the assistant of Shop.",
        categories=[
            Category("ventas", "wants to buy something or asks about products", "SALES PROMPT: sell kindly.",
                     tools=[list_products]),
            Category("soporte", "has a problem with an order already placed", "SUPPORT PROMPT: solve the problem.",
                     tools=[track_order]),
        ],
        default="ventas",
    ),
    tools=[shop_phone],
)
'''


@pytest.fixture
def shop_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway clients package with one client answering by categories; a unique name per test."""
    name = f"engine_clients_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "packages" / name
    (root / "shop").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "shop" / "__init__.py").write_text(textwrap.dedent(SHOP_CLIENT))
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    return name


def tool_names(request: dict) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


def test_classified_instructions_answer_with_the_chosen_categorys_prompt_and_tools(
        start_app, graph: FakeGraph, llm: FakeOpenAI, shop_package: str):
    app = start_app(SHOP.env(), clients_package=shop_package, openai_api_key="sk-test", openai_base_url=llm.url,
                    whatsapp_api_base_url=graph.url, openai_model="answer-model",
                    openai_classifier_model="classifier-model", whatsapp_pair_interval_seconds=0.02)
    wa_id = "5491155551017"
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="soporte"), Reply(content="Ya reviso tu pedido."))
    app.post_webhook(text_delivery(SHOP.waba_id, SHOP.phone_number_id, wa_id, "mi pedido 42 no llegó"), SHOP.secret)
    wait_for(lambda: app.settled(SHOP, wa_id), what="the first turn")

    classifier, answer = llm.requests
    assert classifier["model"] == "classifier-model"
    prompt = classifier["messages"][0]["content"]
    assert classifier["messages"][0]["role"] == "system"
    assert "ventas: wants to buy something or asks about products" in prompt
    assert "soporte: has a problem with an order already placed" in prompt
    assert user_contents(classifier) == ["mi pedido 42 no llegó"]
    assert not classifier.get("tools")

    assert answer["model"] == "answer-model"
    system = answer["messages"][0]["content"]
    assert "You are the assistant of Shop." in system
    assert "SUPPORT PROMPT" in system and "SALES PROMPT" not in system
    assert tool_names(answer) == {"track_order", "shop_phone"}
    assert user_contents(answer) == ["mi pedido 42 no llegó"]
    assert texts_to(graph, wa_id) == ["Ya reviso tu pedido."]
    [reply] = [m for m in app.messages(SHOP, wa_id) if m["direction"] == "out"]
    assert reply["category"] == "soporte"

    # A classifier answer naming no category falls back to the default one.
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="no sé, quizás algo de otra cosa"), Reply(content="¿Qué te gustaría comprar?"))
    app.post_webhook(text_delivery(SHOP.waba_id, SHOP.phone_number_id, wa_id, "hola otra vez"), SHOP.secret)
    wait_for(lambda: len(texts_to(graph, wa_id)) == 2 and app.settled(SHOP, wa_id), what="the second turn")
    fallback = llm.requests[3]
    assert "SALES PROMPT" in fallback["messages"][0]["content"]
    assert "SUPPORT PROMPT" not in fallback["messages"][0]["content"]
    assert tool_names(fallback) == {"list_products", "shop_phone"}
    replies = [m for m in app.messages(SHOP, wa_id) if m["direction"] == "out"]
    assert [(m["text"], m["category"]) for m in replies] == [("Ya reviso tu pedido.", "soporte"),
                                                             ("¿Qué te gustaría comprar?", "ventas")]
