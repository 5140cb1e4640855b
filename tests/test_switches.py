"""Switches the business controls through its REST API: resolving a flag, filtering the list, the bot on or off."""

from __future__ import annotations

import httpx

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.fakes.graph import FakeGraph
from tests.support import text_delivery, wait_for


def post(app: RunningApp, client: ClientIds, path: str) -> httpx.Response:
    return app.http.post(f"{app.url}/api/v1/{client.name}{path}", headers={"Authorization": f"Bearer {client.api_key}"})


def write(app: RunningApp, client: ClientIds, wa_id: str, text: str) -> None:
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, text)
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
