"""Rich outgoing messages through the running app against the Graph stand-in: the exact Cloud API payload of each
kind, 422s that name the field and the limit, the 24 h window, the text fallback (client setting, Meta's refusal),
the sandbox, and tools that send them in the turn's order; a tapped button reaches the model as its title."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.conversation.outbox import Outbox
from core.storage.sqlite import SQLiteStore
from core.whatsapp.client import GraphSender
from core.whatsapp.rich import Button, LocationMessage, ReplyButtons, fallback_text, rich_message
from tests.conftest import RunningApp, TestClientIds as ClientIds
from tests.core.storage.test_store import DEBOUNCE, inbound
from tests.fakes.clock import ManualClock
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import load_delivery, text_delivery, wait_for
from tests.unit.fakes import NO_WAIT_RETRY, T0, instant_pacer, make_client

SHOP = ClientIds("shop", "1301", "2301", "shop-token", "shop-secret", "shop-key")
TWO_DAYS = 2 * 24 * 3600

# A client whose tools send rich messages: one through ctx.reply_rich, one by returning the message.
SHOP_CLIENT = '''
from core.clients import ClientSpec
from core.llm.instructions import SinglePrompt
from core.llm.tools import ToolContext
from core.whatsapp.rich import Button, ListMessage, ReplyButtons, Row, Section


async def ask_confirmation(question: str, *, ctx: ToolContext) -> str:
    """Ask the user to confirm with two buttons."""
    sent = ctx.reply_rich(ReplyButtons(body=question, buttons=[Button(id="confirm_yes", title="Sí, confirmar"),
                                                               Button(id="confirm_no", title="No")]))
    return "Asked. " + sent


async def show_menu() -> ListMessage:
    """Show the menu as a list."""
    return ListMessage(body="Nuestro menú", button="Ver menú", sections=[
        Section(title="Empanadas", rows=[Row(id="carne", title="Carne", description="Cortada a cuchillo"),
                                         Row(id="humita", title="Humita")]),
        Section(title="Bebidas", rows=[Row(id="agua", title="Agua")])])


client = ClientSpec(name="shop", instructions=SinglePrompt("You are the shop."),
                    tools=[ask_confirmation, show_menu])
'''


@pytest.fixture
def clients_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"rich_clients_{uuid.uuid4().hex}"
    root = tmp_path / "pkgs" / name
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text(SHOP_CLIENT)
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return name


@pytest.fixture
def shop(start_app, clients_package: str, graph: FakeGraph, llm: FakeOpenAI):
    """Start the shop live against the stand-ins, with extra variables of its own."""
    def start(**env: str) -> RunningApp:
        return start_app({**SHOP.env(), **env}, clients_package=clients_package, openai_api_key="sk-test",
                         openai_base_url=llm.url, whatsapp_api_base_url=graph.url, whatsapp_retry_base_seconds=0.05)
    return start


def write(app: RunningApp, wa_id: str, text: str, *, ago: float = 0) -> dict[str, Any]:
    delivery = text_delivery(SHOP.waba_id, SHOP.phone_number_id, wa_id, text, timestamp=int(time.time() - ago))
    assert app.post_webhook(delivery, SHOP.secret).status_code == 200
    return wait_for(lambda: app.settled(SHOP, wa_id) and app.conversation(SHOP, wa_id), what="the turn")


def send(app: RunningApp, conversation_id: int, body: dict[str, Any]) -> httpx.Response:
    return app.http.post(f"{app.url}/api/v1/shop/conversations/{conversation_id}/messages", json=body,
                         headers={"Authorization": f"Bearer {SHOP.api_key}"})


def envelope(wa_id: str, message_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_id, "type": message_type,
            message_type: content}


# Each kind as an operator sends it, and the body Meta's documentation shows for it.
KINDS = {
    "buttons": (
        {"type": "buttons", "header": "Tu turno", "body": "¿Confirmás el turno del lunes?", "footer": "Almacén",
         "buttons": [{"id": "yes", "title": "Sí"}, {"title": "Cambiar"}]},
        "interactive",
        {"type": "button", "header": {"type": "text", "text": "Tu turno"}, "body": {"text": "¿Confirmás el turno del lunes?"},
         "footer": {"text": "Almacén"},
         "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Sí"}},
                                {"type": "reply", "reply": {"id": "2", "title": "Cambiar"}}]}},
        "Tu turno\n\n¿Confirmás el turno del lunes?\n\n1. Sí\n2. Cambiar\n\nAlmacén"),
    "list": (
        {"type": "list", "body": "¿Qué envío preferís?", "button": "Opciones",
         "sections": [{"title": "Rápidos", "rows": [{"id": "express", "title": "Express", "description": "En el día"}]},
                      {"title": "Económicos", "rows": [{"title": "Normal"}]}]},
        "interactive",
        {"type": "list", "body": {"text": "¿Qué envío preferís?"},
         "action": {"button": "Opciones", "sections": [
             {"title": "Rápidos", "rows": [{"id": "express", "title": "Express", "description": "En el día"}]},
             {"title": "Económicos", "rows": [{"id": "2", "title": "Normal"}]}]}},
        "¿Qué envío preferís?\n\nRápidos:\n- Express: En el día\n\nEconómicos:\n- Normal"),
    "image": (
        {"type": "image", "link": "https://shop.example/torta.jpg", "caption": "La torta del día"},
        "image", {"link": "https://shop.example/torta.jpg", "caption": "La torta del día"},
        "[image] La torta del día\n\nhttps://shop.example/torta.jpg"),
    "image by id": (
        {"type": "image", "media_id": "1013859600285441"},
        "image", {"id": "1013859600285441"}, "[image]"),
    "document": (
        {"type": "document", "media_id": "1013859600285441", "caption": "Tu factura", "filename": "factura-123.pdf"},
        "document", {"id": "1013859600285441", "caption": "Tu factura", "filename": "factura-123.pdf"},
        "[document: factura-123.pdf] Tu factura"),
    "location": (
        {"type": "location", "latitude": -34.6037, "longitude": -58.3816, "name": "Almacén Demo",
         "address": "Av. Corrientes 1234, CABA"},
        "location", {"latitude": -34.6037, "longitude": -58.3816, "name": "Almacén Demo",
                     "address": "Av. Corrientes 1234, CABA"},
        "📍 Almacén Demo, Av. Corrientes 1234, CABA\n\nhttps://www.google.com/maps/search/?api=1&query=-34.6037%2C-58.3816"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_operator_sends_each_kind_in_the_shape_meta_documents(shop, graph: FakeGraph, kind: str):
    app = shop()
    wa_id = f"549115555{list(KINDS).index(kind):04d}"
    conversation = write(app, wa_id, "hola")
    body, message_type, content, readable = KINDS[kind]

    response = send(app, conversation["id"], body)

    assert response.status_code == 201, response.text
    [call] = graph.sends_of(message_type)
    assert call.body == envelope(wa_id, message_type, content)
    assert (call.phone_number_id, call.token) == (SHOP.phone_number_id, SHOP.token)
    sent = response.json()
    assert (sent["role"], sent["type"], sent["status"], sent["text"]) == ("operator", message_type, "sent", readable)
    assert sent["payload"] == {"kind": body["type"], message_type: content}
    timeline = [m for m in app.messages(SHOP, wa_id) if m["role"] == "operator"]
    assert [(m["type"], m["text"], m["wamid"]) for m in timeline] == [(message_type, readable, sent["wamid"])]


@pytest.mark.parametrize("body, place, says", [
    ({"type": "buttons", "body": "¿Sí?", "buttons": [{"title": "Confirmar mi turno ya"}]},
     ["buttons", "buttons", 0, "title"], "at most 20 characters"),
    ({"type": "buttons", "body": "¿Sí?", "buttons": [{"title": f"B{n}"} for n in range(4)]},
     ["buttons", "buttons"], "at most 3 items"),
    ({"type": "buttons", "body": "¿Sí?", "buttons": [{"title": "Sí"}, {"title": "Sí"}]},
     ["buttons"], "each title must be different"),
    ({"type": "list", "body": "Elegí", "button": "Ver", "sections": [
        {"title": "A", "rows": [{"title": f"R{n}"} for n in range(6)]},
        {"title": "B", "rows": [{"title": f"S{n}"} for n in range(5)]}]},
     ["list"], "at most 10 rows in all sections together (11 given)"),
    ({"type": "list", "body": "Elegí", "button": "Ver", "sections": [{"rows": [{"title": "R"}]}, {"rows": [{"title": "S"}]}]},
     ["list"], "each section needs a title when there is more than one"),
    ({"type": "list", "body": "Elegí", "button": "Ver", "sections": [{"rows": [{"title": "R", "description": "d" * 73}]}]},
     ["list", "sections", 0, "rows", 0, "description"], "at most 72 characters"),
    ({"type": "image", "link": "https://shop.example/a.jpg", "media_id": "123"}, ["image"], "either link"),
    ({"type": "document", "link": "ftp://shop.example/a.pdf"}, ["document", "link"], "http:// or https://"),
    ({"type": "location", "latitude": 91, "longitude": 0}, ["location", "latitude"], "less than or equal to 90"),
    ({"type": "buttons", "body": "a\u0000b", "buttons": [{"title": "Sí"}]}, ["buttons", "body"], "NUL"),
    ({"type": "sticker", "link": "https://shop.example/a.webp"}, [], "does not match any of the expected tags"),
])
def test_a_message_over_metas_limits_is_a_422_naming_the_field_and_nothing_is_sent(
        shop, graph: FakeGraph, body: dict[str, Any], place: list[Any], says: str):
    app = shop()
    conversation = write(app, "5491155551100", "hola")
    before = len(graph.calls)

    response = send(app, conversation["id"], body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", *place] and says in error["msg"], error
    assert len(graph.calls) == before
    assert [m for m in app.messages(SHOP, "5491155551100") if m["role"] == "operator"] == []


def test_outside_the_window_a_rich_message_is_refused_like_a_text(shop, graph: FakeGraph):
    app = shop()
    delivery = text_delivery(SHOP.waba_id, SHOP.phone_number_id, "5491155551200", "hola",
                             timestamp=int(time.time() - TWO_DAYS))
    assert app.post_webhook(delivery, SHOP.secret).status_code == 200
    conversation = wait_for(lambda: (c := app.conversation(SHOP, "5491155551200")) and c["needs_attention"] and c,
                            what="the closed window's flag")

    response = send(app, conversation["id"], KINDS["location"][0])

    assert response.status_code == 422
    assert "WhatsApp only accepts a template now" in response.json()["detail"]
    assert graph.sends_of("location") == []


def test_where_meta_refuses_the_interactive_type_its_text_goes_and_the_timeline_says_so(shop, graph: FakeGraph):
    app = shop()
    conversation = write(app, "5491155551300", "hola")
    graph.fail_next(400, 131009, "(#131009) Parameter value is not valid")

    response = send(app, conversation["id"], KINDS["buttons"][0])

    assert response.status_code == 201, response.text
    [refused] = graph.refused
    assert refused.body["type"] == "interactive"
    [text] = [call for call in graph.texts() if call.body["to"] == "5491155551300" and call.text != "echo: hola"]
    assert text.text == KINDS["buttons"][3]  # the buttons as a numbered list
    sent = response.json()
    assert (sent["type"], sent["status"], sent["text"]) == ("interactive", "sent", KINDS["buttons"][3])
    fallback = sent["payload"]["fallback"]
    assert fallback["sent_as"] == "text" and fallback["code"] == 131009
    assert "WhatsApp refused the buttons message (code 131009" in fallback["reason"]


def test_a_refusal_the_text_cannot_get_past_is_a_502(shop, graph: FakeGraph):
    app = shop()
    conversation = write(app, "5491155551400", "hola")
    graph.fail_next(400, 100, "Invalid parameter")

    response = send(app, conversation["id"], KINDS["list"][0])

    assert response.status_code == 502 and "Invalid parameter" in response.json()["detail"]
    assert [call.text for call in graph.texts() if call.body["to"] == "5491155551400"] == ["echo: hola"]
    [stored] = [m for m in app.messages(SHOP, "5491155551400") if m["role"] == "operator"]
    assert stored["status"] == "failed" and "fallback" not in stored["payload"]


def test_a_client_with_rich_messages_off_sends_their_text(shop, graph: FakeGraph):
    app = shop(SHOP_RICH_MESSAGES="false")
    conversation = write(app, "5491155551500", "hola")

    response = send(app, conversation["id"], KINDS["location"][0])

    assert response.status_code == 201, response.text
    assert graph.sends_of("location") == []
    [text] = [call for call in graph.texts() if call.body["to"] == "5491155551500" and call.text.startswith("📍")]
    assert text.text == KINDS["location"][3]  # the place and a maps link
    assert response.json()["payload"]["fallback"] == {
        "sent_as": "text", "reason": "rich messages are off for this client (SHOP_RICH_MESSAGES=false)"}


def test_a_bad_rich_messages_setting_stops_startup_naming_the_variable(shop):
    with pytest.raises(Exception) as raised:
        shop(SHOP_RICH_MESSAGES="maybe")
    assert "SHOP_RICH_MESSAGES" in str(raised.value)


def test_in_the_sandbox_a_rich_message_is_recorded_not_sent(start_app, clients_package: str, graph: FakeGraph):
    app = start_app({"SHOP_PHONE_NUMBER_IDS": SHOP.phone_number_id, "SHOP_WABA_IDS": SHOP.waba_id,
                     "SHOP_API_KEY": SHOP.api_key, "SHOP_APP_SECRET": SHOP.secret}, clients_package=clients_package,
                    whatsapp_api_base_url=graph.url)
    conversation = write(app, "5491155551600", "hola")

    response = send(app, conversation["id"], KINDS["document"][0])

    assert response.status_code == 201, response.text
    sent = response.json()
    assert (sent["status"], sent["type"], sent["text"]) == ("sandbox", "document", KINDS["document"][3])
    assert sent["wamid"].startswith("sandbox.")
    assert graph.sends_of("document") == []


def test_a_tools_buttons_go_out_before_the_reply_and_a_tap_reaches_the_model_as_the_title(
        shop, graph: FakeGraph, llm: FakeOpenAI):
    app = shop()
    wa_id = "5491155550001"  # the person of the recorded button reply
    llm.script(Reply(tool_calls=[("ask_confirmation", {"question": "¿Confirmás el turno del lunes a las 17:30?"})]),
               Reply(content="Te dejé los botones para confirmar."))
    write(app, wa_id, "quiero confirmar mi turno")

    buttons, reply = [call for call in graph.calls if call.body.get("to") == wa_id and "type" in call.body]
    assert buttons.body == envelope(wa_id, "interactive", {
        "type": "button", "body": {"text": "¿Confirmás el turno del lunes a las 17:30?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "confirm_yes", "title": "Sí, confirmar"}},
                               {"type": "reply", "reply": {"id": "confirm_no", "title": "No"}}]}})
    assert reply.text == "Te dejé los botones para confirmar."
    tool_result = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_result == ["Asked. Sent to the user as a WhatsApp buttons message, shown before your answer; they "
                           "see:\n¿Confirmás el turno del lunes a las 17:30?\n\n1. Sí, confirmar\n2. No"]
    outbound = [m for m in app.messages(SHOP, wa_id) if m["direction"] == "out"]
    assert [(m["type"], m["role"], m["status"]) for m in outbound] == [("interactive", "assistant", "sent"),
                                                                      ("text", "assistant", "sent")]
    [asked] = [m for m in app.messages(SHOP, wa_id) if m["direction"] == "in"]
    assert {m["batch_id"] for m in outbound} == {asked["batch_id"]}  # stored with the turn that decided it

    llm.script(Reply(content="¡Listo, confirmado!"))
    tap = load_delivery("interactive_button_reply.json", SHOP.waba_id, SHOP.phone_number_id)
    tap["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    assert app.post_webhook(tap, SHOP.secret).status_code == 200
    wait_for(lambda: len(llm.requests) == 3, what="the model asked about the tap")
    last = llm.requests[2]["messages"]
    assert last[-1] == {"role": "user", "content": "Sí, confirmar"}
    # The model's history has the buttons as the person saw them.
    assert {"role": "assistant", "content": "¿Confirmás el turno del lunes a las 17:30?\n\n1. Sí, confirmar\n2. No"} in last


def test_a_tool_may_return_its_rich_message(shop, graph: FakeGraph, llm: FakeOpenAI):
    app = shop()
    llm.script(Reply(tool_calls=[("show_menu", {})]), Reply(content=""))
    write(app, "5491155551700", "¿qué tienen?")

    [menu] = graph.sends_of("interactive")
    assert menu.body["interactive"]["action"]["sections"][0]["rows"][0] == {
        "id": "carne", "title": "Carne", "description": "Cortada a cuchillo"}
    # An answer with no words after the list sends the list alone, not the fallback message.
    assert [call for call in graph.texts() if call.body["to"] == "5491155551700"] == []
    outbound = [m for m in app.messages(SHOP, "5491155551700") if m["direction"] == "out"]
    assert [(m["type"], m["payload"]["kind"]) for m in outbound] == [("interactive", "list")]


def test_the_readable_text_of_a_long_message_fits_a_text():
    long = ReplyButtons(body="x" * 1024, buttons=[Button(title="Sí")])
    assert fallback_text(long) == long.readable()
    place = LocationMessage(latitude=0, longitude=0)
    assert place.readable() == "📍\n\nhttps://www.google.com/maps/search/?api=1&query=0.0%2C0.0"


@pytest.mark.anyio
async def test_a_fallback_recorded_before_a_crash_goes_out_as_text_when_resent(tmp_path: Path, graph: FakeGraph):
    """A process that recorded the fallback and died before sending: the next holder sends the text, not the rich
    form Meta refused."""
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()
    try:
        conversation_id = (await store.record_inbound("demo", inbound("hola", at=T0), DEBOUNCE, T0)).conversation_id
        rich = ReplyButtons(body="¿Confirmás?", buttons=[Button(title="Sí"), Button(title="No")])
        stored = await store.add_operator_message(conversation_id, rich_message(rich, "operator"), T0)
        await store.record_fallback(stored.id, {**(stored.payload or {}),
                                                "fallback": {"sent_as": "text", "reason": "refused (131026)"}})
        async with httpx.AsyncClient() as http:
            outbox = Outbox(store, instant_pacer(), NO_WAIT_RETRY, ManualClock(T0))
            conversation = await store.get_conversation("demo", conversation_id)
            pending = await store.get_message(stored.id)
            assert conversation is not None and pending is not None
            assert await outbox.deliver(make_client(), GraphSender(http, graph.url), conversation, [pending])
    finally:
        await store.close()
    assert graph.sends_of("interactive") == []
    [text] = graph.texts()
    assert text.text == "¿Confirmás?\n\n1. Sí\n2. No"
