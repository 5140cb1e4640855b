"""Templates through the running app against the Graph stand-in: synced with pagination, listed, sent outside the
24 h window with the payload Meta documents, refused with reasons, kept current by webhooks; Business-app echoes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import ConfigError
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import load_delivery, text_delivery, wait_for

MARTA = "5491155550001"
TURNO = {
    "id": "1689556908129832", "name": "recordatorio_turno", "language": "es_AR", "status": "APPROVED",
    "category": "UTILITY", "parameter_format": "POSITIONAL",
    "components": [
        {"type": "BODY", "text": "Hola {{1}}, te esperamos el {{2}} a las {{3}}.",
         "example": {"body_text": [["Marta", "lunes", "17:30"]]}},
        {"type": "FOOTER", "text": "Almacén Demo"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Confirmar"}]},
    ],
}
PEDIDO = {
    "id": "2", "name": "pedido_listo", "language": "es_AR", "status": "APPROVED", "category": "UTILITY",
    "parameter_format": "NAMED",
    "components": [{"type": "BODY", "text": "{{nombre}}, tu pedido {{pedido}} está listo.",
                    "example": {"body_text_named_params": [{"param_name": "nombre", "example": "Marta"},
                                                           {"param_name": "pedido", "example": "#1"}]}}],
}
TEMPLATES = [
    TURNO,
    {**TURNO, "id": "3", "language": "en_US", "components": [{"type": "BODY", "text": "Hi {{1}}, see you {{2}} at {{3}}."}]},
    PEDIDO,
    {"id": "4", "name": "promo_verano", "language": "es_AR", "status": "PAUSED", "category": "MARKETING",
     "components": [{"type": "BODY", "text": "¡Ofertas de verano!"}]},
    {"id": "5", "name": "bienvenida", "language": "es_AR", "status": "REJECTED", "category": "MARKETING",
     "components": [{"type": "BODY", "text": "¡Bienvenido!"}]},
]
TWO_DAYS = 2 * 24 * 3600


@pytest.fixture
def app(start_app, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """Both clients live; demo's WABA lists five templates, two a page."""
    graph.templates[DEMO.waba_id] = [dict(item) for item in TEMPLATES]
    graph.template_page_size = 2
    running = start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                        whatsapp_api_base_url=graph.url, whatsapp_retry_base_seconds=0.05)
    wait_for(lambda: len(templates(running)) == 5, what="the startup sync")
    return running


def templates(app: RunningApp, client=DEMO) -> list[dict[str, Any]]:
    response = app.api(client, "/templates")
    assert response.status_code == 200, response.text
    return response.json()


def post(app: RunningApp, path: str, body: dict[str, Any], client=DEMO) -> httpx.Response:
    return app.http.post(f"{app.url}/api/v1/{client.name}{path}", json=body,
                         headers={"Authorization": f"Bearer {client.api_key}"})


def write(app: RunningApp, wa_id: str, text: str, *, ago: float = 0) -> None:
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, text, timestamp=int(time.time() - ago))
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200


def silent_conversation(app: RunningApp, wa_id: str) -> dict[str, Any]:
    """A person who last wrote two days ago (a delivery Meta retried late): the window is closed."""
    write(app, wa_id, "¿Me confirman el turno?", ago=TWO_DAYS)
    return wait_for(lambda: (c := app.conversation(DEMO, wa_id)) and c["needs_attention"] and c, what="the flag")


def status_delivery(wamid: str, status: str, recipient: str) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": DEMO.waba_id, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5491100000000", "phone_number_id": DEMO.phone_number_id},
        "statuses": [{"id": wamid, "status": status, "timestamp": str(int(time.time())), "recipient_id": recipient}]}}]}]}


class TestSync:
    def test_every_page_is_synced_at_startup_with_the_clients_token(self, app: RunningApp, graph: FakeGraph):
        requests = [r for r in graph.template_requests if r["waba_id"] == DEMO.waba_id]
        assert len(requests) == 3  # five templates, two a page
        assert {r["token"] for r in requests} == {DEMO.token}
        assert "after" not in requests[0] and requests[1]["after"] and requests[2]["after"] != requests[1]["after"]
        assert "parameter_format" in requests[0]["fields"]
        assert [(t["name"], t["language"], t["status"]) for t in templates(app)] == [
            ("bienvenida", "es_AR", "REJECTED"), ("pedido_listo", "es_AR", "APPROVED"),
            ("promo_verano", "es_AR", "PAUSED"), ("recordatorio_turno", "en_US", "APPROVED"),
            ("recordatorio_turno", "es_AR", "APPROVED")]
        assert templates(app, EMPRENDEMY) == []  # its WABA lists none

    def test_the_list_says_what_each_part_takes(self, app: RunningApp):
        listed = {(t["name"], t["language"]): t for t in templates(app)}
        turno = listed[("recordatorio_turno", "es_AR")]
        assert turno["category"] == "UTILITY" and turno["parameter_format"] == "POSITIONAL"
        body, footer, button = turno["components"]
        assert (body["type"], [(p["key"], p["example"]) for p in body["parameters"]]) == (
            "body", [("body.1", "Marta"), ("body.2", "lunes"), ("body.3", "17:30")])
        assert (footer["type"], footer["parameters"]) == ("footer", [])
        assert (button["type"], button["sub_type"], button["text"]) == ("button", "quick_reply", "Confirmar")
        [pedido_body] = listed[("pedido_listo", "es_AR")]["components"]
        assert [p["name"] for p in pedido_body["parameters"]] == ["nombre", "pedido"]

    def test_a_template_gone_from_meta_is_gone_after_the_next_sync(self, app: RunningApp, graph: FakeGraph):
        graph.templates[DEMO.waba_id] = [TURNO]
        # A template webhook for a template the store does not know asks for a sync.
        news = load_delivery("template_status.json", DEMO.waba_id, DEMO.phone_number_id)
        news["entry"][0]["changes"][0]["value"]["message_template_name"] = "desconocida"
        assert app.post_webhook(news, DEMO.secret).status_code == 200
        wait_for(lambda: [t["name"] for t in templates(app)] == ["recordatorio_turno"], what="the resync")


class TestSendOutsideTheWindow:
    def test_the_bot_and_the_operator_are_told_which_templates_reopen_it(self, app: RunningApp, llm: FakeOpenAI):
        conversation = silent_conversation(app, "5491155553001")
        reason = conversation["attention_reason"]
        assert reason.startswith("outside the 24 h window")
        assert "pedido_listo (es_AR), recordatorio_turno (en_US), recordatorio_turno (es_AR)" in reason
        assert "promo_verano" not in reason and "bienvenida" not in reason
        assert llm.requests == []
        refused = post(app, f"/conversations/{conversation['id']}/messages", {"text": "¿Seguís ahí?"})
        assert refused.status_code == 422
        assert "recordatorio_turno (es_AR)" in refused.json()["detail"]

    def test_a_template_goes_out_with_the_documented_payload_and_its_statuses_come_back(self, app: RunningApp,
                                                                                           graph: FakeGraph):
        wa_id = "5491155553002"
        conversation = silent_conversation(app, wa_id)
        sent = post(app, f"/conversations/{conversation['id']}/template",
                    {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["Marta", "lunes", "17:30"]})
        assert sent.status_code == 201, sent.text
        [call] = graph.template_sends()
        assert call.token == DEMO.token and call.phone_number_id == DEMO.phone_number_id
        assert call.body == {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_id, "type": "template",
            "template": {"name": "recordatorio_turno", "language": {"code": "es_AR"},
                         "components": [{"type": "body", "parameters": [
                             {"type": "text", "text": "Marta"}, {"type": "text", "text": "lunes"},
                             {"type": "text", "text": "17:30"}]}]}}
        message = sent.json()
        assert (message["direction"], message["role"], message["type"], message["status"]) == (
            "out", "operator", "template", "sent")
        assert message["text"] == "Hola Marta, te esperamos el lunes a las 17:30.\nAlmacén Demo\n[Confirmar]"
        assert app.post_webhook(status_delivery(message["wamid"], "delivered", wa_id), DEMO.secret).status_code == 200
        wait_for(lambda: [m["status"] for m in app.messages(DEMO, wa_id) if m["type"] == "template"] == ["delivered"],
                 what="the delivered status")

    def test_named_parameters_go_with_their_names(self, app: RunningApp, graph: FakeGraph):
        conversation = silent_conversation(app, "5491155553003")
        sent = post(app, f"/conversations/{conversation['id']}/template",
                    {"name": "pedido_listo", "language": "es_AR", "parameters": {"pedido": "#4471", "nombre": "Ana"}})
        assert sent.status_code == 201, sent.text
        [call] = graph.template_sends()
        assert call.body["template"]["components"] == [{"type": "body", "parameters": [
            {"type": "text", "text": "Ana", "parameter_name": "nombre"},
            {"type": "text", "text": "#4471", "parameter_name": "pedido"}]}]
        assert sent.json()["text"] == "Ana, tu pedido #4471 está listo."

    def test_a_refusal_by_whatsapp_is_a_502_and_stays_in_the_timeline(self, app: RunningApp, graph: FakeGraph):
        wa_id = "5491155553004"
        conversation = silent_conversation(app, wa_id)
        graph.fail_next(400, 132001, "Template name does not exist in the translation", to=wa_id)
        response = post(app, f"/conversations/{conversation['id']}/template",
                        {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["a", "b", "c"]})
        assert response.status_code == 502
        assert "Template name does not exist" in response.json()["detail"]
        [stored] = [m for m in app.messages(DEMO, wa_id) if m["type"] == "template"]
        assert (stored["status"], stored["error"]["code"]) == ("failed", 132001)
        assert "code 132001" in app.conversation(DEMO, wa_id)["attention_reason"]


class TestValidation:
    @pytest.mark.parametrize(("body", "detail"), [
        ({"name": "no_existe", "language": "es_AR"}, "client demo has no template 'no_existe'"),
        ({"name": "recordatorio_turno", "language": "pt_BR", "parameters": ["a", "b", "c"]},
         "template 'recordatorio_turno' has no language 'pt_BR' (it has: en_US, es_AR)"),
        ({"name": "promo_verano", "language": "es_AR"}, "is PAUSED: only APPROVED templates can be sent"),
        ({"name": "bienvenida", "language": "es_AR"}, "is REJECTED"),
        ({"name": "recordatorio_turno", "language": "es_AR", "parameters": ["Marta"]},
         "takes 3 parameters (body.1, body.2, body.3); 1 given"),
        ({"name": "pedido_listo", "language": "es_AR", "parameters": {"nombre": "Ana"}},
         "is missing parameter body.pedido"),
        ({"name": "pedido_listo", "language": "es_AR", "parameters": {"nombre": "Ana", "pedido": "1", "total": "9"}},
         "has no parameter 'total'"),
    ])
    def test_what_does_not_fit_is_a_422_that_says_which(self, app: RunningApp, graph: FakeGraph,
                                                        body: dict[str, Any], detail: str):
        write(app, "5491155553010", "hola")
        conversation = wait_for(lambda: app.conversation(DEMO, "5491155553010"), what="the conversation")
        response = post(app, f"/conversations/{conversation['id']}/template", body)
        assert response.status_code == 422
        assert detail in response.json()["detail"]
        assert graph.template_sends() == []
        assert [m for m in app.messages(DEMO, "5491155553010") if m["type"] == "template"] == []

    def test_another_clients_conversation_is_a_404(self, app: RunningApp):
        write(app, "5491155553011", "hola")
        conversation = wait_for(lambda: app.conversation(DEMO, "5491155553011"), what="the conversation")
        response = post(app, f"/conversations/{conversation['id']}/template",
                        {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["a", "b", "c"]},
                        client=EMPRENDEMY)
        assert response.status_code == 404

    def test_a_malformed_body_is_a_422(self, app: RunningApp):
        response = post(app, "/conversations/1/template", {"name": "", "language": "es_AR"})
        assert response.status_code == 422


class TestTemplateWebhooks:
    def test_status_and_quality_updates_are_kept(self, app: RunningApp, graph: FakeGraph):
        paused = load_delivery("template_status.json", DEMO.waba_id, DEMO.phone_number_id)
        value = paused["entry"][0]["changes"][0]["value"]
        value.update(event="PAUSED", message_template_language="es_AR")
        quality = load_delivery("template_quality.json", DEMO.waba_id, DEMO.phone_number_id)
        quality["entry"][0]["changes"][0]["value"]["message_template_language"] = "es_AR"
        assert app.post_webhook(paused, DEMO.secret).json() == {"status": "ok", "stored": 0}
        assert app.post_webhook(quality, DEMO.secret).status_code == 200
        turno = next(t for t in templates(app) if (t["name"], t["language"]) == ("recordatorio_turno", "es_AR"))
        assert (turno["status"], turno["quality"]) == ("PAUSED", "YELLOW")
        write(app, "5491155553020", "hola")
        conversation = wait_for(lambda: app.conversation(DEMO, "5491155553020"), what="the conversation")
        response = post(app, f"/conversations/{conversation['id']}/template",
                        {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["a", "b", "c"]})
        assert response.status_code == 422 and "is PAUSED" in response.json()["detail"]

    def test_a_newly_approved_template_is_fetched(self, app: RunningApp, graph: FakeGraph):
        graph.templates[DEMO.waba_id].append({"id": "9", "name": "nuevo_horario", "language": "es_AR",
                                              "status": "APPROVED", "category": "UTILITY",
                                              "components": [{"type": "BODY", "text": "Cambiamos el horario."}]})
        approved = load_delivery("template_status.json", DEMO.waba_id, DEMO.phone_number_id)
        approved["entry"][0]["changes"][0]["value"].update(message_template_name="nuevo_horario",
                                                           message_template_language="es_AR")
        assert app.post_webhook(approved, DEMO.secret).status_code == 200
        wait_for(lambda: any(t["name"] == "nuevo_horario" for t in templates(app)), what="the new template")


class TestEchoes:
    def test_what_staff_wrote_in_the_business_app_is_in_the_timeline_once(self, app: RunningApp, graph: FakeGraph,
                                                                           llm: FakeOpenAI):
        echoes = load_delivery("smb_message_echoes.json", DEMO.waba_id, DEMO.phone_number_id)
        # `stored` counts the people's messages (what the bot answers); an echo is the business's own.
        assert app.post_webhook(echoes, DEMO.secret).json() == {"status": "ok", "stored": 0}
        assert app.post_webhook(echoes, DEMO.secret).status_code == 200
        [message] = app.messages(DEMO, MARTA)
        assert (message["direction"], message["role"], message["type"], message["status"]) == (
            "out", "operator", "text", "sent")
        assert message["text"] == "Hola Marta, soy Laura del local. Ya te lo dejo reservado para las 17:30."
        assert message["wamid"].startswith("wamid.HBgN")
        conversation = app.conversation(DEMO, MARTA)
        assert conversation["due_at"] is None and conversation["user_id"] == "AR.13491208655302741918"
        # Another person's whole turn: had the echo woken the bot, its model call would have come first.
        write(app, "5491155553030", "hola")
        wait_for(lambda: graph.texts(), what="the other person's reply")
        assert len(llm.requests) == 1 and [c.body["to"] for c in graph.texts()] == ["5491155553030"]

    def test_an_echo_joins_an_existing_conversation_after_what_came_before(self, app: RunningApp, graph: FakeGraph):
        write(app, MARTA, "¿Tienen turno a las 17:30?")
        wait_for(lambda: graph.texts() and app.settled(DEMO, MARTA), what="the bot's reply")
        echoes = load_delivery("smb_message_echoes.json", DEMO.waba_id, DEMO.phone_number_id)
        assert app.post_webhook(echoes, DEMO.secret).status_code == 200
        timeline = [(m["role"], m["direction"]) for m in app.messages(DEMO, MARTA)]
        assert timeline == [("user", "in"), ("assistant", "out"), ("operator", "out")]


class TestSandboxClients:
    def test_a_sandbox_client_has_the_templates_it_is_given(self, start_app, tmp_path: Path):
        path = tmp_path / "templates.json"
        path.write_text(json.dumps({"data": [TURNO]}), encoding="utf-8")
        env = {"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_WABA_IDS": DEMO.waba_id,
               "DEMO_APP_SECRET": DEMO.secret, "DEMO_API_KEY": DEMO.api_key, "DEMO_TEMPLATES_FILE": str(path),
               "EMPRENDEMY_API_KEY": EMPRENDEMY.api_key}
        app = start_app(env)
        wait_for(lambda: len(templates(app)) == 1, what="the file's templates")
        assert templates(app, EMPRENDEMY) == []
        write(app, "5491155553040", "hola", ago=TWO_DAYS)
        conversation = wait_for(lambda: app.conversation(DEMO, "5491155553040"), what="the conversation")
        sent = post(app, f"/conversations/{conversation['id']}/template",
                    {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["Marta", "lunes", "17:30"]})
        assert sent.status_code == 201 and sent.json()["status"] == "sandbox"


class TestSettings:
    def test_an_unreadable_templates_file_names_the_variable(self, monkeypatch, tmp_path: Path):
        from core.app import create_app
        from core.config import Settings
        monkeypatch.setenv("DEMO_TEMPLATES_FILE", str(tmp_path / "missing.json"))
        with pytest.raises(ConfigError, match="DEMO_TEMPLATES_FILE: cannot read templates"):
            create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'a.db'}"), env_file=None)

    def test_a_negative_sync_interval_names_the_variable(self, monkeypatch, tmp_path: Path):
        from core.config import load_settings
        monkeypatch.setenv("TEMPLATE_SYNC_SECONDS", "-1")
        with pytest.raises(ConfigError, match="TEMPLATE_SYNC_SECONDS"):
            load_settings(_env_file=None)


def test_a_nul_in_a_parameter_is_a_422_not_a_500(app: RunningApp):
    write(app, "5491155553050", "hola")
    conversation = wait_for(lambda: app.conversation(DEMO, "5491155553050"), what="the conversation")
    response = post(app, f"/conversations/{conversation['id']}/template",
                    {"name": "recordatorio_turno", "language": "es_AR", "parameters": ["Ma\u0000rta", "b", "c"]})
    assert response.status_code == 422 and "NUL" in response.text
