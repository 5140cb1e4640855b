"""The store's templates and Business-app echoes, on both databases (a SQLite file; the tests' PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from core.webhook.echoes import EchoMessage
from core.whatsapp.templates import Template
from tests.core.storage.test_store import DEBOUNCE, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
BODY = [{"type": "BODY", "text": "Hola {{1}}, tu turno es a las {{2}}.",
         "example": {"body_text": [["Marta", "17:30"]]}}]


def template(name: str, language: str = "es_AR", status: str = "APPROVED", quality: str | None = None) -> Template:
    return Template(name=name, language=language, category="UTILITY", status=status, components=BODY,
                    template_id=f"id-{name}-{language}", quality=quality)


def echo(wamid: str, to: str = "5491155550001", text: str = "Ya te lo reservo") -> EchoMessage:
    return EchoMessage(phone_number_id="2001", wamid=wamid, user_key=to, wa_id=to, user_id=None, type="text",
                       text=text, wa_timestamp=T0, payload={"id": wamid, "type": "text", "text": {"body": text}})


class TestReplaceTemplates:
    async def test_a_sync_adds_updates_and_removes(self, store: Store):
        await store.replace_templates("demo", [template("turno"), template("turno", "en_US"), template("promo")], T0)
        await store.replace_templates("demo", [template("turno", status="PAUSED"), template("nuevo")],
                                      T0 + timedelta(hours=1))
        found = await store.list_templates("demo")
        assert [(t.name, t.language, t.status) for t in found] == [("nuevo", "es_AR", "APPROVED"),
                                                                  ("turno", "es_AR", "PAUSED")]
        assert found[1].components == BODY and found[1].template_id == "id-turno-es_AR"
        assert found[1].updated_at == T0 + timedelta(hours=1)

    async def test_clients_are_apart(self, store: Store):
        await store.replace_templates("demo", [template("turno")], T0)
        await store.replace_templates("emprendemy", [], T0)
        assert await store.get_template("emprendemy", "turno", "es_AR") is None
        assert (await store.get_template("demo", "turno", "es_AR")) is not None

    async def test_a_quality_the_list_leaves_out_is_kept(self, store: Store):
        await store.replace_templates("demo", [template("turno")], T0)
        assert await store.update_template("demo", "turno", "es_AR", T0, quality="YELLOW")
        await store.replace_templates("demo", [template("turno")], T0)
        assert (await store.get_template("demo", "turno", "es_AR")).quality == "YELLOW"
        await store.replace_templates("demo", [template("turno", quality="GREEN")], T0)
        assert (await store.get_template("demo", "turno", "es_AR")).quality == "GREEN"


class TestUpdateTemplate:
    async def test_status_changes_and_unknown_ones_say_so(self, store: Store):
        await store.replace_templates("demo", [template("turno")], T0)
        assert await store.update_template("demo", "turno", "es_AR", T0, status="PAUSED", category="MARKETING")
        stored = await store.get_template("demo", "turno", "es_AR")
        assert (stored.status, stored.category) == ("PAUSED", "MARKETING")
        assert not await store.update_template("demo", "otro", "es_AR", T0, status="APPROVED")
        assert not await store.update_template("emprendemy", "turno", "es_AR", T0, status="APPROVED")

    async def test_approved_templates_name_only_approved_ones(self, store: Store):
        await store.replace_templates("demo", [template("turno"), template("turno", "en_US"),
                                               template("promo", status="REJECTED")], T0)
        assert await store.approved_templates("demo") == ["turno (en_US)", "turno (es_AR)"]
        assert await store.approved_templates("emprendemy") == []


class TestRecordEcho:
    async def test_an_echo_starts_a_conversation_once(self, store: Store):
        first = await store.record_echo("demo", echo("wamid.E1"), T0)
        again = await store.record_echo("demo", echo("wamid.E1"), T0 + timedelta(seconds=5))
        assert first is not None and again is None
        conversation = await store.get_conversation("demo", first)
        assert (conversation.user_key, conversation.wa_id, conversation.due_at) == ("5491155550001", "5491155550001", None)
        [message] = await store.list_messages(first, 10, 0)
        assert (message.direction, message.role, message.status, message.text) == ("out", "operator", "sent",
                                                                                   "Ya te lo reservo")
        assert message.processed_at == T0 and message.wamid == "wamid.E1"

    async def test_an_echo_joins_the_persons_conversation_in_order_and_asks_no_answer(self, store: Store):
        result = await store.record_inbound("demo", inbound("¿tienen turno?", wamid="wamid.IN1"), DEBOUNCE, T0)
        due = (await store.get_conversation("demo", result.conversation_id)).due_at
        later = T0 + timedelta(minutes=1)
        assert await store.record_echo("demo", echo("wamid.E2"), later) == result.conversation_id
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert conversation.due_at == due  # the pending message is still the bot's to answer, no sooner, no later
        assert [m.text for m in await store.pending_batch(result.conversation_id)] == ["¿tienen turno?"]
        assert conversation.updated_at == later

    async def test_the_same_wamid_is_never_a_second_message(self, store: Store):
        await store.record_inbound("demo", inbound("hola", wamid="wamid.SAME"), DEBOUNCE, T0)
        assert await store.record_echo("demo", echo("wamid.SAME"), T0) is None
