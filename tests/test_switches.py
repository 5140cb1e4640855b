"""Switches the business controls through its REST API: resolving a flag, filtering the list, the bot on or off."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from core.clock import StartedClock

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.fakes.graph import FakeGraph
from tests.support import text_delivery, wait_for


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    """start_app's DATABASE_URL: every test runs on SQLite and on PostgreSQL."""
    return each_store_url


def post(app: RunningApp, client: ClientIds, path: str) -> httpx.Response:
    return app.http.post(f"{app.url}/api/v1/{client.name}{path}", headers={"Authorization": f"Bearer {client.api_key}"})


def write(app: RunningApp, client: ClientIds, wa_id: str, text: str) -> None:
    """A message sent now by the app's clock (its WhatsApp timestamp too: the 24 h window is on that clock)."""
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, text,
                             timestamp=int(app.clock.now().timestamp()))
    assert app.post_webhook(delivery, client.secret).status_code == 200


def flagged_conversation(app: RunningApp, graph: FakeGraph, wa_id: str) -> int:
    """A demo conversation whose reply WhatsApp refused (outside the window): flagged for a person."""
    graph.fail_next(400, 131047, "Re-engagement message")
    write(app, DEMO, wa_id, "hola")
    conversation = wait_for(lambda: (c := app.conversation(DEMO, wa_id)) and c["needs_attention"] and c,
                            what="the conversation to be flagged")
    return conversation["id"]


class TestResolve:
    def test_resolving_clears_the_flag_and_returns_the_conversation(self, live_app: RunningApp, graph: FakeGraph):
        conversation_id = flagged_conversation(live_app, graph, "5491155550101")
        response = post(live_app, DEMO, f"/conversations/{conversation_id}/resolve")
        assert response.status_code == 200
        body = response.json()
        assert (body["id"], body["needs_attention"], body["attention_reason"]) == (conversation_id, False, None)
        assert live_app.conversation(DEMO, "5491155550101")["needs_attention"] is False

    def test_another_clients_or_an_unknown_conversation_is_404(self, live_app: RunningApp, graph: FakeGraph):
        conversation_id = flagged_conversation(live_app, graph, "5491155550102")
        assert post(live_app, EMPRENDEMY, f"/conversations/{conversation_id}/resolve").status_code == 404
        assert post(live_app, DEMO, f"/conversations/{conversation_id + 1000}/resolve").status_code == 404
        assert live_app.conversation(DEMO, "5491155550102")["needs_attention"] is True

    def test_resolving_needs_the_clients_key(self, live_app: RunningApp):
        response = live_app.http.post(f"{live_app.url}/api/v1/demo/conversations/1/resolve")
        assert response.status_code == 401


def listed(app: RunningApp, query: str, client: ClientIds = DEMO) -> list[str]:
    response = app.api(client, f"/conversations?{query}")
    assert response.status_code == 200, response.text
    return [c["user_key"] for c in response.json()]


def answered(app: RunningApp, graph: FakeGraph, client: ClientIds, wa_id: str, text: str) -> None:
    before = len([c for c in graph.texts() if c.body.get("to") == wa_id])
    write(app, client, wa_id, text)
    wait_for(lambda: len([c for c in graph.texts() if c.body.get("to") == wa_id]) > before
             and app.settled(client, wa_id), what="the bot's reply")


class TestFilters:
    def test_mode_attention_text_and_update_time(self, live_app: RunningApp, graph: FakeGraph):
        answered(live_app, graph, DEMO, "5491155550201", "Quiero info del CURSO")
        answered(live_app, graph, DEMO, "5491155550202", "hola")
        flagged_conversation(live_app, graph, "5491155550203")
        answered(live_app, graph, EMPRENDEMY, "5491155550204", "curso")
        taken = live_app.conversation(DEMO, "5491155550202")["id"]
        assert post(live_app, DEMO, f"/conversations/{taken}/takeover").status_code == 200
        assert listed(live_app, "mode=human") == ["5491155550202"]
        assert set(listed(live_app, "mode=bot")) == {"5491155550201", "5491155550203"}
        assert listed(live_app, "needs_attention=true") == ["5491155550203"]
        assert listed(live_app, "q=curso") == ["5491155550201"]
        assert listed(live_app, "q=5550202") == ["5491155550202"]
        assert listed(live_app, "q=curso", EMPRENDEMY) == ["5491155550204"]
        since = live_app.conversation(DEMO, "5491155550202")["updated_at"]
        assert listed(live_app, f"updated_since={httpx.QueryParams({'x': since})['x']}".replace("+", "%2B")) == [
            "5491155550202"]
        assert listed(live_app, "updated_since=2999-01-01T00:00:00") == []

    @pytest.mark.parametrize("query, name", [("updated_since=yesterday", "updated_since"), ("mode=robot", "mode"),
                                             ("needs_attention=maybe", "needs_attention"), ("active=2", "active"),
                                             ("q=", "q"), ("q=" + "x" * 201, "q"),
                                             ("updated_since=0001-01-01T00:00:00%2B01:00", "updated_since")])
    def test_a_malformed_filter_is_422_naming_it(self, live_app: RunningApp, query: str, name: str):
        response = live_app.api(DEMO, f"/conversations?{query}")
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name] and error["msg"]


class TestActive:
    def test_active_conversations_first_by_the_apps_clock(self, start_app, live_app: RunningApp, graph: FakeGraph):
        answered(live_app, graph, DEMO, "5491155550301", "hola")
        answered(live_app, graph, DEMO, "5491155550302", "hola")
        assert set(listed(live_app, "active=true")) == {"5491155550301", "5491155550302"}
        assert listed(live_app, "active=false") == []
        # Two days later, by the app's clock: one person writes again, the other's conversation is only touched.
        later = start_app(clock=StartedClock(live_app.clock.now() + timedelta(days=2)),
                          openai_api_key=live_app.settings.openai_api_key,
                          openai_base_url=live_app.settings.openai_base_url,
                          whatsapp_api_base_url=live_app.settings.whatsapp_api_base_url)
        answered(later, graph, DEMO, "5491155550301", "sigo acá")
        quiet = later.conversation(DEMO, "5491155550302")["id"]
        assert post(later, DEMO, f"/conversations/{quiet}/resolve").status_code == 200
        assert listed(later, "") == ["5491155550301", "5491155550302"]
        assert listed(later, "active=true") == ["5491155550301"]
        assert listed(later, "active=false") == ["5491155550302"]


def put_bot(app: RunningApp, client: ClientIds, body: object) -> httpx.Response:
    return app.http.put(f"{app.url}/api/v1/{client.name}/bot", json=body,
                        headers={"Authorization": f"Bearer {client.api_key}"})


class TestBotSwitch:
    def test_off_messages_wait_for_a_person_and_back_on_only_new_ones_are_answered(self, live_app: RunningApp,
                                                                                    graph: FakeGraph):
        assert live_app.api(DEMO, "/bot").json() == {"enabled": True}
        assert put_bot(live_app, DEMO, {"enabled": False}).json() == {"enabled": False}
        assert live_app.api(DEMO, "/bot").json() == {"enabled": False}
        assert live_app.api(EMPRENDEMY, "/bot").json() == {"enabled": True}
        write(live_app, DEMO, "5491155550401", "hola, ¿hay alguien?")
        # The other client still answers: a full turn there is the barrier for anything demo's bot would do.
        answered(live_app, graph, EMPRENDEMY, "5491155550402", "hola")
        conversation = live_app.conversation(DEMO, "5491155550401")
        assert (conversation["mode"], conversation["due_at"], conversation["needs_attention"]) == ("bot", None, True)
        assert "bot is off" in conversation["attention_reason"]
        assert listed(live_app, "needs_attention=true") == ["5491155550401"]
        assert not [c for c in graph.texts() if c.body.get("to") == "5491155550401"]

        assert put_bot(live_app, DEMO, {"enabled": True}).json() == {"enabled": True}
        answered(live_app, graph, DEMO, "5491155550401", "¿siguen ahí?")
        replies = [c for c in graph.texts() if c.body.get("to") == "5491155550401"]
        assert len(replies) == 1
        inbound = [m for m in live_app.messages(DEMO, "5491155550401") if m["direction"] == "in"]
        # The first message was handled when it came (waiting for a person), not by the bot's turn.
        assert inbound[0]["batch_id"] is None and inbound[1]["batch_id"] is not None

    @pytest.mark.parametrize("body", [{}, {"enabled": "no"}, {"enabled": 0}, {"enabled": None}, [True]])
    def test_a_malformed_switch_is_422_and_changes_nothing(self, live_app: RunningApp, body: object):
        assert put_bot(live_app, DEMO, body).status_code == 422
        assert live_app.api(DEMO, "/bot").json() == {"enabled": True}

    def test_the_switch_needs_the_clients_own_key(self, live_app: RunningApp):
        response = live_app.http.put(f"{live_app.url}/api/v1/demo/bot", json={"enabled": False},
                                     headers={"Authorization": f"Bearer {EMPRENDEMY.api_key}"})
        assert response.status_code == 401
        assert live_app.api(DEMO, "/bot").json() == {"enabled": True}
