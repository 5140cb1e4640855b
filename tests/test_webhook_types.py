"""Every recorded delivery through the real running app: stored as it should be, answered only when it should be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.clock import StartedClock
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import load_delivery, text_delivery, wait_for

MARTA = "5491155550001"
MARTA_BSUID = "AR.13491208655302741918"
JULIAN = "5491155550002"
LUCIA_BSUID = "AR.30987612340987612345"
SENTINEL = "5491155559999"

# fixture -> the messages it must leave stored: (user_key, type, text), in delivery order.
INBOUND: dict[str, list[tuple[str, str, str]]] = {
    "text.json": [(MARTA, "text", "Hola! ¿Tienen turnos para mañana a la tarde?")],
    "text_reply_context.json": [(MARTA, "text", "El de las 17:30 me sirve")],
    "image.json": [(MARTA, "image", "[image] Así quedó la factura")],
    # Voice notes are stored transcribed (the stand-in OpenAI's transcript of the stand-in Graph API's media).
    "audio_voice.json": [(MARTA, "audio", "[voice note] hola, quería consultar por un curso")],
    "video.json": [(MARTA, "video", "[video] Este es el ruido que hace")],
    "document.json": [(MARTA, "document", "[document] Presupuesto-0042.pdf Te paso el presupuesto firmado")],
    "sticker.json": [(MARTA, "sticker", "[sticker]")],
    "location.json": [(MARTA, "location", "[location] Alto Palermo, Av. Santa Fe 3253, C1425 CABA, Argentina "
                                          "(-34.5885211, -58.4106449)")],
    "contacts.json": [(MARTA, "contacts", "[contact] Sofía Martínez +54 9 11 5555-0123 +54 11 4555-0199")],
    "interactive_button_reply.json": [(MARTA, "interactive", "Sí, confirmar")],
    "interactive_list_reply.json": [(MARTA, "interactive", "Lun 23/11 17:30 - Sucursal Palermo, con Dra. Ruiz")],
    "button.json": [(MARTA, "button", "Reprogramar")],
    "reaction.json": [(MARTA, "reaction", "[reaction 👍]")],
    "order.json": [(MARTA, "order", "[order] 2 x ALF-MAICENA-12, 1 x CAFE-MOLIDO-500 - Lo paso a retirar a la tarde")],
    "system.json": [(MARTA, "system", "[system] User Marta Gómez changed from 5491155550001 to 5491155550099")],
    "referral.json": [(MARTA, "text", "Hola, vi el anuncio. ¿Cuánto sale la consulta? "
                                      "[via ad: Reservá tu turno por WhatsApp]")],
    "unsupported.json": [(MARTA, "unsupported", "[unsupported message: Message type unknown]")],
    "unknown_type.json": [(MARTA, "some_future_type", "[some_future_type message]")],
    "bsuid_only.json": [(LUCIA_BSUID, "text", "Hola, ¿hacen envíos a Rosario?")],
    "several_messages.json": [(MARTA, "text", "hola"), (MARTA, "text", "una consulta"),
                              (MARTA, "text", "¿hasta qué hora atienden hoy?")],
    "multi_entry.json": [(MARTA, "text", "Buen día, quería consultar por mi pedido"),
                         (JULIAN, "text", "Hola, ¿están abiertos hoy?"),
                         (MARTA, "text", "Es el número 4471")],
}
SILENT = {"reaction.json", "system.json"}
STATUSES = ["status_sent.json", "status_delivered.json", "status_read.json", "status_failed.json"]
NOT_MESSAGES = ["template_status.json", "template_quality.json", "phone_quality.json", "account_update.json",
                "value_errors.json"]  # smb_message_echoes.json is stored: tests/test_templates.py
# The day the fixtures were recorded (their first timestamp, 1795322400; tests/data/webhooks/README.md).
RECORDED_AT = datetime(2026, 11, 22, 4, 40, tzinfo=UTC)


@pytest.fixture
def live_app(start_app, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """Both clients live, with the app's clock 30 days after the recordings: a replay must not depend on the date."""
    return start_app({**DEMO.env(), **EMPRENDEMY.env()}, clock=StartedClock(RECORDED_AT + timedelta(days=30)),
                     openai_api_key="sk-test", openai_base_url=llm.url, whatsapp_api_base_url=graph.url)


def demo_delivery(app: RunningApp, name: str, age: timedelta = timedelta(0)) -> dict[str, Any]:
    """A recorded delivery replayed as if its newest event happened `age` ago by the app's clock."""
    return load_delivery(name, DEMO.waba_id, DEMO.phone_number_id, replayed_at=app.clock.now() - age)


def sent_messages(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Meta's message objects of a delivery, in delivery order."""
    return [message for entry in document["entry"] for change in entry["changes"]
            for message in change["value"].get("messages", [])]


def conversations(app: RunningApp) -> list[dict[str, Any]]:
    response = app.api(DEMO, "/conversations")
    assert response.status_code == 200
    return response.json()


def conversation_of(app: RunningApp, user_key: str) -> dict[str, Any] | None:
    return next((c for c in conversations(app) if c["user_key"] == user_key), None)


def messages_of(app: RunningApp, conversation_id: int) -> list[dict[str, Any]]:
    response = app.api(DEMO, f"/conversations/{conversation_id}/messages")
    assert response.status_code == 200
    return response.json()


def settled(app: RunningApp, user_key: str) -> bool:
    """The user's conversation exists, nothing is due, and every inbound message is handled."""
    conversation = conversation_of(app, user_key)
    if conversation is None or conversation["due_at"] is not None:
        return False
    return all(m["processed_at"] for m in messages_of(app, conversation["id"]))


def wait_settled(app: RunningApp, user_key: str) -> None:
    wait_for(lambda: settled(app, user_key), what=f"the conversation of {user_key} to settle")


def prove_idle_with_a_sentinel(app: RunningApp, graph: FakeGraph) -> None:
    """Send a text from another user and wait for its one reply: whatever came before has been handled by then."""
    sentinel = text_delivery(DEMO.waba_id, DEMO.phone_number_id, SENTINEL, "ping",
                             timestamp=int(app.clock.now().timestamp()))
    assert app.post_webhook(sentinel, DEMO.secret).status_code == 200
    wait_for(lambda: any(call.body.get("to") == SENTINEL for call in graph.texts()), what="the sentinel's reply")
    wait_settled(app, SENTINEL)


class TestEveryInboundTypeIsStored:
    @pytest.mark.parametrize("name", sorted(INBOUND))
    def test_inbound_fixture_is_stored_as_user_messages(self, name: str, live_app: RunningApp, graph: FakeGraph,
                                                        llm: FakeOpenAI):
        document = demo_delivery(live_app, name)
        originals = sent_messages(document)
        expected = INBOUND[name]
        assert len(originals) == len(expected)

        response = live_app.post_webhook(document, DEMO.secret)

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "stored": len(expected)}
        for user_key in {user_key for user_key, _, _ in expected}:
            wait_settled(live_app, user_key)
        for original, (user_key, kind, text) in zip(originals, expected, strict=True):
            conversation = conversation_of(live_app, user_key)
            assert conversation is not None
            assert conversation["phone_number_id"] == DEMO.phone_number_id
            stored = [m for m in messages_of(live_app, conversation["id"]) if m["wamid"] == original["id"]]
            assert len(stored) == 1
            message = stored[0]
            assert message["direction"] == "in"
            assert message["role"] == "user"
            assert message["type"] == kind
            assert message["text"] == text
            assert message["payload"]["id"] == original["id"]
            wa_timestamp = datetime.fromisoformat(message["wa_timestamp"])
            assert wa_timestamp == datetime.fromtimestamp(int(original["timestamp"]), UTC)

    def test_several_messages_are_kept_in_the_order_they_were_sent(self, live_app: RunningApp, graph: FakeGraph,
                                                                   llm: FakeOpenAI):
        assert live_app.post_webhook(demo_delivery(live_app, "several_messages.json"), DEMO.secret).status_code == 200
        wait_settled(live_app, MARTA)

        conversation = conversation_of(live_app, MARTA)
        inbound = [m["text"] for m in messages_of(live_app, conversation["id"]) if m["direction"] == "in"]
        assert inbound == ["hola", "una consulta", "¿hasta qué hora atienden hoy?"]
        assert len(graph.texts()) == 1
        assert graph.texts()[0].text == "echo: hola | una consulta | ¿hasta qué hora atienden hoy?"

    def test_multi_entry_reaches_both_users(self, live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
        assert live_app.post_webhook(demo_delivery(live_app, "multi_entry.json"), DEMO.secret).status_code == 200
        wait_settled(live_app, MARTA)
        wait_settled(live_app, JULIAN)

        assert {c["user_key"]: c["contact_name"] for c in conversations(live_app)} == {
            MARTA: "Marta Gómez", JULIAN: "Julián Pérez"}
        assert sorted(call.body["to"] for call in graph.texts()) == [MARTA, JULIAN]


class TestWhichMessagesAreAnswered:
    @pytest.mark.parametrize("name", sorted(SILENT))
    def test_silent_type_is_stored_but_never_answered(self, name: str, live_app: RunningApp, graph: FakeGraph,
                                                      llm: FakeOpenAI):
        response = live_app.post_webhook(demo_delivery(live_app, name), DEMO.secret)

        assert response.status_code == 200
        assert response.json()["stored"] == 1
        wait_settled(live_app, MARTA)
        assert graph.texts() == []
        assert llm.requests == []
        conversation = conversation_of(live_app, MARTA)
        [message] = messages_of(live_app, conversation["id"])
        assert message["type"] == name.removesuffix(".json")
        assert message["processed_at"] is not None

    def test_text_gets_exactly_one_reply_to_the_sender(self, live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
        assert live_app.post_webhook(demo_delivery(live_app, "text.json"), DEMO.secret).status_code == 200

        wait_for(graph.texts, what="a reply")
        wait_settled(live_app, MARTA)

        replies = graph.texts()
        assert len(replies) == 1
        assert replies[0].phone_number_id == DEMO.phone_number_id
        assert replies[0].token == DEMO.token
        assert replies[0].body["to"] == MARTA
        assert "recipient" not in replies[0].body
        assert replies[0].text == "echo: Hola! ¿Tienen turnos para mañana a la tarde?"
        conversation = conversation_of(live_app, MARTA)
        outbound = [m for m in messages_of(live_app, conversation["id"]) if m["direction"] == "out"]
        assert [(m["role"], m["text"]) for m in outbound] == [
            ("assistant", "echo: Hola! ¿Tienen turnos para mañana a la tarde?")]

    def test_bsuid_only_user_is_answered_by_recipient_not_to(self, live_app: RunningApp, graph: FakeGraph,
                                                             llm: FakeOpenAI):
        assert live_app.post_webhook(demo_delivery(live_app, "bsuid_only.json"), DEMO.secret).status_code == 200

        wait_for(graph.texts, what="a reply")
        wait_settled(live_app, LUCIA_BSUID)

        [reply] = graph.texts()
        assert reply.body["recipient"] == LUCIA_BSUID
        assert "to" not in reply.body
        assert reply.phone_number_id == DEMO.phone_number_id
        conversation = conversation_of(live_app, LUCIA_BSUID)
        assert (conversation["wa_id"], conversation["user_id"], conversation["contact_name"]) == (
            None, LUCIA_BSUID, "Lucía")


class TestNothingToAnswer:
    @pytest.mark.parametrize("name", STATUSES)
    def test_status_alone_is_acknowledged_and_answers_nothing(self, name: str, live_app: RunningApp,
                                                               graph: FakeGraph, llm: FakeOpenAI):
        response = live_app.post_webhook(demo_delivery(live_app, name), DEMO.secret)

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "stored": 0}
        prove_idle_with_a_sentinel(live_app, graph)
        assert [c["user_key"] for c in conversations(live_app)] == [SENTINEL]
        assert [call.body["to"] for call in graph.texts()] == [SENTINEL]
        assert all(call.body.get("to") != MARTA for call in graph.calls)

    @pytest.mark.parametrize("name", NOT_MESSAGES)
    def test_non_message_change_is_acknowledged_and_stores_nothing(self, name: str, live_app: RunningApp,
                                                                    graph: FakeGraph, llm: FakeOpenAI):
        response = live_app.post_webhook(demo_delivery(live_app, name), DEMO.secret)

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "stored": 0}
        prove_idle_with_a_sentinel(live_app, graph)
        assert [c["user_key"] for c in conversations(live_app)] == [SENTINEL]
        assert [call.body["to"] for call in graph.texts()] == [SENTINEL]
        assert len(llm.requests) == 1


class TestTheWindowFollowsTheAppsClock:
    def test_a_delivery_25_hours_old_is_stored_flagged_and_not_answered(self, live_app: RunningApp, graph: FakeGraph,
                                                                       llm: FakeOpenAI):
        response = live_app.post_webhook(demo_delivery(live_app, "text.json", age=timedelta(hours=25)), DEMO.secret)

        assert response.status_code == 200
        assert response.json()["stored"] == 1
        wait_settled(live_app, MARTA)
        conversation = conversation_of(live_app, MARTA)
        assert conversation["needs_attention"] is True
        assert "24 h window" in conversation["attention_reason"]
        assert graph.texts() == []
        assert llm.requests == []  # no model call for a reply that could not be sent
        [message] = messages_of(live_app, conversation["id"])
        assert message["text"] == "Hola! ¿Tienen turnos para mañana a la tarde?"
