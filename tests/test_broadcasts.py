"""Contacts, opt-out and broadcasts through the running app against the Graph stand-in: the opt-out told once,
contacts edited, filtered and exported, a broadcast's per-person templates with statuses flowing back, opted-out
people skipped, a pause on 130429 and a cancel."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import pytest

from tests.conftest import DEMO, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import text_delivery, wait_for

ANA, BETO, CARLA, NEW = "5491155550001", "5491155550002", "5491155550003", "5491155550009"
SALUDO = {
    "id": "77", "name": "saludo", "language": "es_AR", "status": "APPROVED", "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "Hola {{1}}, {{2}}", "example": {"body_text": [["Ana", "promo"]]}}],
}


@pytest.fixture
def app(start_app, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    graph.templates[DEMO.waba_id] = [dict(SALUDO)]
    running = start_app(DEMO.env(), openai_api_key="sk-test", openai_base_url=llm.url,
                        whatsapp_api_base_url=graph.url, whatsapp_retry_base_seconds=0.05,
                        broadcast_pause_seconds=0.3)
    wait_for(lambda: running.api(DEMO, "/templates").json(), what="the startup sync")
    return running


def call(app: RunningApp, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return app.http.request(method, f"{app.url}/api/v1/{DEMO.name}{path}", json=body,
                            headers={"Authorization": f"Bearer {DEMO.api_key}"})


def write(app: RunningApp, wa_id: str, text: str, name: str = "Ana") -> None:
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, text, timestamp=int(time.time()), name=name)
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200


def texts_to(graph: FakeGraph, wa_id: str) -> list[str]:
    return [call.text for call in graph.texts() if call.body.get("to") == wa_id]


def people(app: RunningApp, *names: tuple[str, str]) -> None:
    """These people wrote and were answered."""
    for wa_id, name in names:
        write(app, wa_id, "hola", name)
    for wa_id, _ in names:
        wait_for(lambda: app.settled(DEMO, wa_id), what=f"{wa_id} answered")


def status(wamid: str, state: str, recipient: str) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": DEMO.waba_id, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5491100000000", "phone_number_id": DEMO.phone_number_id},
        "statuses": [{"id": wamid, "status": state, "timestamp": str(int(time.time())), "recipient_id": recipient}]}}]}]}


def finished(app: RunningApp, broadcast_id: int) -> dict[str, Any]:
    return wait_for(lambda: (b := call(app, "GET", f"/broadcasts/{broadcast_id}").json())["status"] == "done" and b,
                    what="the broadcast done")


class TestOptOut:
    def test_the_keyword_opts_out_and_is_answered_once_without_the_model(self, app: RunningApp, graph: FakeGraph,
                                                                          llm: FakeOpenAI):
        people(app, (ANA, "Ana"))
        model_calls = len(llm.requests)
        write(app, ANA, "  BAJÁ ")
        wait_for(lambda: len(texts_to(graph, ANA)) == 2, what="the confirmation")
        assert texts_to(graph, ANA)[1].startswith("Listo, no vas a recibir")
        contact = call(app, "GET", "/contacts").json()[0]
        assert contact["user_key"] == ANA and contact["opted_out"] and contact["opted_out_at"]
        write(app, ANA, "Stop")  # already out: nothing is said again
        wait_for(lambda: app.settled(DEMO, ANA), what="the second keyword handled")
        assert len(texts_to(graph, ANA)) == 2 and len(llm.requests) == model_calls

    def test_a_keyword_inside_a_sentence_is_a_message_like_any_other(self, app: RunningApp, graph: FakeGraph):
        people(app, (ANA, "Ana"))
        write(app, ANA, "no quiero darme de baja")
        wait_for(lambda: len(texts_to(graph, ANA)) == 2, what="the bot's answer")
        assert not call(app, "GET", "/contacts").json()[0]["opted_out"]


class TestContacts:
    def test_edit_filter_search_and_export(self, app: RunningApp):
        people(app, (ANA, "Ana"), (BETO, "Beto"))
        edited = call(app, "PATCH", f"/contacts/{ANA}", {"name": "=HYPERLINK(\"x\")", "email": "ana@example.com",
                                                         "tags": ["VIP", "madrid"], "notes": "prefiere tarde"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["tags"] == ["madrid", "vip"] and edited.json()["profile_name"] == "Ana"
        assert [c["user_key"] for c in call(app, "GET", "/contacts?tag=vip").json()] == [ANA]
        assert [c["user_key"] for c in call(app, "GET", "/contacts?q=beto").json()] == [BETO]
        assert [c["user_key"] for c in call(app, "GET", "/contacts?q=EXAMPLE.COM").json()] == [ANA]
        assert len(call(app, "GET", "/contacts?limit=1&offset=1").json()) == 1
        export = call(app, "GET", "/contacts.csv")
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        rows = {row["user_key"]: row for row in csv.DictReader(io.StringIO(export.text))}
        assert rows[ANA]["name"] == "'=HYPERLINK(\"x\")" and rows[ANA]["tags"] == "madrid;vip"
        assert rows[BETO]["name"] == "Beto" and rows[BETO]["opted_out"] == "False"

    def test_bad_edits_get_a_reason(self, app: RunningApp):
        people(app, (ANA, "Ana"))
        bad = call(app, "PATCH", f"/contacts/{ANA}", {"email": "not-an-email"})
        assert bad.status_code == 422 and "email" in bad.text
        assert call(app, "PATCH", f"/contacts/{ANA}", {"colour": "red"}).status_code == 422
        assert call(app, "PATCH", "/contacts/5490000000000", {"notes": "x"}).status_code == 404


class TestBroadcasts:
    def test_per_person_templates_skip_the_opted_out_and_count_statuses(self, app: RunningApp, graph: FakeGraph):
        people(app, (ANA, "Ana"), (BETO, "Beto"), (CARLA, "Carla"))
        for wa_id in (ANA, BETO, CARLA):
            assert call(app, "PATCH", f"/contacts/{wa_id}", {"tags": ["vip"]}).status_code == 200
        assert call(app, "PATCH", f"/contacts/{CARLA}", {"opted_out": True}).status_code == 200
        created = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR",
                                                    "parameters": ["{{contact.name}}", "promo de hoy"],
                                                    "audience": {"tags": ["VIP"]}})
        assert created.status_code == 202, created.text
        done = finished(app, created.json()["id"])
        assert done["total"] == 3 and done["counts"]["sent"] == 2 and done["counts"]["skipped"] == 1
        sends = {call.body["to"]: call for call in graph.template_sends()}
        assert set(sends) == {ANA, BETO}
        assert sends[ANA].body["template"]["components"][0]["parameters"][0] == {"type": "text", "text": "Ana"}
        assert sends[ANA].body["biz_opaque_callback_data"].startswith("broadcast:")
        # Statuses flow back through the messages the broadcast stored.
        ana = next(m for m in app.messages(DEMO, ANA) if m["type"] == "template")
        beto = next(m for m in app.messages(DEMO, BETO) if m["type"] == "template")
        app.post_webhook(status(ana["wamid"], "read", ANA), DEMO.secret)
        app.post_webhook(status(beto["wamid"], "delivered", BETO), DEMO.secret)
        counts = call(app, "GET", f"/broadcasts/{done['id']}").json()["counts"]
        assert (counts["sent"], counts["delivered"], counts["read"], counts["skipped"]) == (0, 1, 1, 1)

    def test_someone_who_never_wrote_gets_a_conversation(self, app: RunningApp, graph: FakeGraph):
        created = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR",
                                                    "parameters": ["{{contact.name}}", "x"],
                                                    "audience": {"user_keys": [NEW]}})
        finished(app, created.json()["id"])
        assert [c.body["to"] for c in graph.template_sends()] == [NEW]
        assert graph.template_sends()[0].body["template"]["components"][0]["parameters"][0]["text"] == "-"
        assert [m["type"] for m in app.messages(DEMO, NEW)] == ["template"]

    def test_a_rate_error_pauses_then_every_recipient_gets_it_once(self, app: RunningApp, graph: FakeGraph):
        keys = [f"54911000{n:05d}" for n in range(12)]
        graph.fail_next(400, 130429, "rate limit hit")
        created = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR",
                                                    "parameters": ["a", "b"], "audience": {"user_keys": keys}})
        done = finished(app, created.json()["id"])
        sent = [c.body["to"] for c in graph.template_sends() if c not in graph.refused]
        assert sorted(sent) == sorted(keys) and done["counts"]["sent"] == 12
        assert "130429" in (done["last_error"] or "")

    def test_refusals_and_cancel(self, app: RunningApp, graph: FakeGraph):
        wrong = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR", "parameters": ["a"],
                                                  "audience": {"user_keys": [NEW]}})
        assert wrong.status_code == 422 and "takes 2 parameters" in wrong.text
        field = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR",
                                                  "parameters": ["{{contact.phone}}", "a"],
                                                  "audience": {"user_keys": [NEW]}})
        assert field.status_code == 422 and "contact.name" in field.text
        both = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR", "parameters": ["a", "b"],
                                                 "audience": {"user_keys": [NEW], "tags": ["x"]}})
        assert both.status_code == 422
        nobody = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR", "parameters": ["a", "b"],
                                                   "audience": {"tags": ["Nadie"]}})
        assert nobody.status_code == 422 and "no contact has any of the tags nadie" in nobody.text
        later = call(app, "POST", "/broadcasts", {"template": "saludo", "language": "es_AR", "parameters": ["a", "b"],
                                                  "audience": {"user_keys": [NEW, ANA]}, "at": "2999-01-01T00:00:00"})
        assert later.status_code == 202
        assert call(app, "GET", f"/broadcasts/{later.json()['id']}").json()["status"] == "scheduled"
        cancelled = call(app, "POST", f"/broadcasts/{later.json()['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["counts"]["cancelled"] == 2
        assert [b["id"] for b in call(app, "GET", "/broadcasts").json()] == [later.json()["id"]]
        assert graph.template_sends() == []
        assert call(app, "GET", "/broadcasts/999").status_code == 404
