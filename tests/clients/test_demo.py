"""The demo client (Almacén Demo) through the whole pipeline: classified prompts, knowledge, hand-over, hours."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import clients.demo as demo_package
from clients.demo import INSTRUCTIONS, prompts
from clients.demo.settings import DemoSettings
from clients.demo.tools import DAYS, business_hours, is_open
from core.knowledge.documents import load_documents, split_passages
from core.llm.tools import ToolContext
from tests.clients.conftest import Smtp
from tests.clients.helpers import conversation, flat, messages, settled, system_prompt, tool_names, tool_results
from tests.conftest import DEMO, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

KNOWLEDGE = Path(demo_package.__file__).parent / "knowledge"


@pytest.fixture
def demo(start_app: Any, graph: FakeGraph, llm: FakeOpenAI):
    """Start the app with the demo client live against the stand-ins; extra variables may be given."""
    def start(**env: str) -> RunningApp:
        return start_app({**DEMO.env(), **env}, openai_api_key="sk-test", openai_base_url=llm.url,
                         whatsapp_api_base_url=graph.url)
    return start


def say(app: RunningApp, wa_id: str, text: str) -> None:
    response = app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, text), DEMO.secret)
    assert response.status_code == 200 and response.json()["stored"] == 1


def test_a_question_is_classified_answered_from_the_knowledge_files_and_stored_with_its_category(
        demo, graph: FakeGraph, llm: FakeOpenAI):
    app = demo()
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="consulta"),
               Reply(tool_calls=[("search_knowledge", {"query": "envíos Palermo costo"})]),
               Reply(content="¡Sí! Llegamos a Palermo: el envío sale $2.500 y es gratis desde $40.000."))
    say(app, "5491160000001", "Hola! Hacen envios a Palermo? Cuánto sale?")

    [reply] = wait_for(graph.texts, what="the reply")
    assert reply.text == "¡Sí! Llegamos a Palermo: el envío sale $2.500 y es gratis desde $40.000."
    assert (reply.phone_number_id, reply.token, reply.body["to"]) == (DEMO.phone_number_id, DEMO.token, "5491160000001")

    # 1. The classifier: the categories and their descriptions, the user's words, no tools.
    classifier = llm.requests[0]
    assert system_prompt(llm, 0) == INSTRUCTIONS.classifier_prompt()
    for name in ("saludo", "consulta", "soporte", "humano"):
        assert f"- {name}: {prompts.DESCRIPTIONS[name]}" in system_prompt(llm, 0)
    assert classifier["messages"][-1] == {"role": "user", "content": "Hola! Hacen envios a Palermo? Cuánto sale?"}
    assert "tools" not in classifier
    # 2. The answer: the base prompt plus consulta's, with consulta's tools and the client's business_hours.
    assert system_prompt(llm, 1) == INSTRUCTIONS.system_prompt("consulta")
    assert "Almacén Demo" in system_prompt(llm, 1) and prompts.CONSULTA.strip() in system_prompt(llm, 1)
    assert tool_names(llm.requests[1]) == {"business_hours", "search_knowledge"}
    # 3. The real search ran over clients/demo/knowledge: the passage on zones and costs reached the model.
    [passages] = tool_results(llm.requests[2])
    assert passages.startswith("[1] Envíos > Zonas de envío y costo (envios.md)\n")
    assert "Hacemos envíos a domicilio con nuestro repartidor a Villa Crespo, Almagro, Palermo" in flat(passages)
    assert "El envío cuesta $2.500 y es gratis en compras desde $40.000." in flat(passages)
    assert len(llm.requests) == 3

    found = wait_for(lambda: settled(app, DEMO, "5491160000001"), what="the conversation to settle")
    stored = messages(app, DEMO, found["id"])
    assert [(m["direction"], m["type"], m["category"]) for m in stored] == [
        ("in", "text", None), ("internal", "tool_calls", "consulta"), ("internal", "tool_result", "consulta"),
        ("out", "text", "consulta")]
    assert stored[-1]["text"] == reply.text
    assert stored[2]["text"] == passages


@pytest.mark.parametrize(("answer", "category", "tools"), [
    ("saludo", "saludo", {"business_hours"}),
    ("Consulta.", "consulta", {"business_hours", "search_knowledge"}),
    ("soporte", "soporte", {"business_hours", "search_knowledge", "hand_over_to_person"}),
    ("HUMANO", "humano", {"business_hours", "hand_over_to_person"}),
    ("no estoy seguro", "consulta", {"business_hours", "search_knowledge"}),  # names none: the default
])
def test_each_category_answers_with_its_own_prompt_and_tools(demo, graph: FakeGraph, llm: FakeOpenAI, answer: str,
                                                             category: str, tools: set[str]):
    app = demo()
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content=answer), Reply(content="Respuesta de prueba"))
    say(app, "5491160000002", "mensaje")

    wait_for(graph.texts, what="the reply")
    assert system_prompt(llm, 1) == INSTRUCTIONS.system_prompt(category)
    assert tool_names(llm.requests[1]) == tools
    found = wait_for(lambda: settled(app, DEMO, "5491160000002"), what="the conversation to settle")
    assert [m["category"] for m in messages(app, DEMO, found["id"]) if m["direction"] == "out"] == [category]


def test_a_complaint_gets_the_returns_policy_from_the_knowledge(demo, graph: FakeGraph, llm: FakeOpenAI):
    app = demo()
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="soporte"),
               Reply(tool_calls=[("search_knowledge", {"query": "devolver queso en mal estado"})]),
               Reply(content="¡Uy, perdón! Mandanos una foto del queso y del ticket y lo reponemos."))
    say(app, "5491160000003", "Ayer compré queso y está en mal estado, lo quiero devolver")

    wait_for(graph.texts, what="the reply")
    [passages] = tool_results(llm.requests[2])
    assert passages.startswith("[1] Cambios y devoluciones > Fiambres, quesos y productos frescos")
    assert "avisanos el mismo día de la compra o de la entrega, con una foto del producto y del ticket" in flat(passages)


def test_asking_for_a_person_hands_over_emails_staff_and_silences_the_bot(demo, graph: FakeGraph, llm: FakeOpenAI,
                                                                         smtp: Smtp):
    app = demo(**smtp.env("demo", "encargada@almacendemo.test"))
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="humano"),
               Reply(tool_calls=[("hand_over_to_person", {"reason": "quiere hablar con el encargado por un pedido"})]),
               Reply(content="Listo, ya le aviso al equipo: te responden por este chat."))
    say(app, "5491160000004", "Quiero hablar con una persona, por favor")

    [reply] = wait_for(graph.texts, what="the reply")
    assert reply.text == "Listo, ya le aviso al equipo: te responden por este chat."
    assert tool_names(llm.requests[1]) == {"business_hours", "hand_over_to_person"}
    assert tool_results(llm.requests[2])[0].startswith("Done: once you send your reply, a person of the team takes over")

    human = wait_for(lambda: (c := conversation(app, DEMO, "5491160000004")) and c["mode"] == "human" and c,
                     what="the conversation to switch to human mode")
    assert human["human_since"] is not None

    [email] = wait_for(lambda: smtp.mailbox.received, what="the staff email")
    assert email.rcpt_tos == ["encargada@almacendemo.test"]
    assert email.mail_from == "bot@demo.test"
    assert email.message["Subject"] == f"[demo] Conversation {human['id']} needs a person"
    body = email.message.get_content()
    assert f"Conversation {human['id']} with Ana (5491160000004) on {DEMO.phone_number_id} was handed to a person." in body
    assert "Reason: quiere hablar con el encargado por un pedido" in body

    # The user writes again: stored, but not answered by the bot.
    say(app, "5491160000004", "¿Hola? ¿Hay alguien?")
    later = wait_for(lambda: [m for m in messages(app, DEMO, human["id"]) if m["text"] == "¿Hola? ¿Hay alguien?"],
                     what="the new message to be stored")
    # Filed as seen (no bot turn will pick it up) and nothing is scheduled to answer it.
    assert (later[0]["batch_id"], later[0]["processed_at"] is not None) == (None, True)
    assert conversation(app, DEMO, "5491160000004")["due_at"] is None
    # Another user's message is answered meanwhile: the scheduler ran, and still left the handed-over one alone.
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="saludo"), Reply(content="¡Hola! ¿En qué te ayudo?"))
    say(app, "5491160000005", "hola")
    wait_for(lambda: len(graph.texts()) == 2, what="the other user's reply")
    assert graph.texts()[1].body["to"] == "5491160000005"
    assert len(llm.requests) == 5
    stored = messages(app, DEMO, human["id"])
    assert [(m["direction"], m["text"]) for m in stored if m["direction"] != "internal"] == [
        ("in", "Quiero hablar con una persona, por favor"), ("out", reply.text), ("in", "¿Hola? ¿Hay alguien?")]
    assert conversation(app, DEMO, "5491160000004")["mode"] == "human"
    assert len(smtp.mailbox.received) == 1


def test_business_hours_are_told_in_the_client_time_zone(demo, graph: FakeGraph, llm: FakeOpenAI):
    app = demo(DEMO_TIMEZONE="Asia/Tokyo")
    llm.category = None  # script the classifier call like any other
    llm.script(Reply(content="consulta"), Reply(tool_calls=[("business_hours", {})]),
               Reply(content="Te paso los horarios."))
    before = datetime.now(UTC)
    say(app, "5491160000006", "¿Están abiertos ahora?")
    wait_for(graph.texts, what="the reply")
    after = datetime.now(UTC)

    [told] = tool_results(llm.requests[2])
    found = re.fullmatch(r"Ahora \((\w+) (\d\d:\d\d), Asia/Tokyo\) el local está (abierto|cerrado)[,;] .+\. "
                         r"Horarios: lunes: 09:00-18:00; martes: 09:00-18:00; miércoles: 09:00-18:00; "
                         r"jueves: 09:00-18:00; viernes: 09:00-18:00; sábado: 10:00-13:00; domingo: cerrado\.", told)
    assert found, told
    tokyo = ZoneInfo("Asia/Tokyo")
    candidates: dict[tuple[str, str], datetime] = {}
    moment = before.astimezone(tokyo).replace(second=0, microsecond=0)
    while moment <= after.astimezone(tokyo):  # every minute the turn may have run in, on Tokyo's clock
        candidates[(DAYS[moment.weekday()], f"{moment:%H:%M}")] = moment
        moment += timedelta(minutes=1)
    assert (found[1], found[2]) in candidates  # Tokyo's clock, not Buenos Aires' (12 hours apart)
    moment = candidates[(found[1], found[2])]
    assert found[3] == ("abierto" if is_open(DemoSettings.model_fields["opening_hours"].default, moment) else "cerrado")


def settings(**values: Any) -> DemoSettings:
    return DemoSettings(_env_prefix="DEMO_TEST_UNSET_", **values)


@pytest.mark.anyio
@pytest.mark.parametrize(("utc", "zone", "expected"), [
    # Monday 2 March 2026, 15:00 UTC is noon in Buenos Aires (UTC-3)...
    ("2026-03-02T15:00:00", "America/Argentina/Buenos_Aires",
     "Ahora (lunes 12:00, America/Argentina/Buenos_Aires) el local está abierto, hasta las 18:00."),
    # ... and midnight into Tuesday in Tokyo (UTC+9).
    ("2026-03-02T15:00:00", "Asia/Tokyo", "Ahora (martes 00:00, Asia/Tokyo) el local está cerrado; abre hoy a las 09:00."),
    ("2026-03-02T22:00:00", "America/Argentina/Buenos_Aires",
     "Ahora (lunes 19:00, America/Argentina/Buenos_Aires) el local está cerrado; abre mañana a las 09:00."),
    # Saturday after closing: Sunday is closed, so Monday.
    ("2026-03-07T17:00:00", "America/Argentina/Buenos_Aires",
     "Ahora (sábado 14:00, America/Argentina/Buenos_Aires) el local está cerrado; abre el lunes a las 09:00."),
])
async def test_business_hours_at_fixed_moments(utc: str, zone: str, expected: str):
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    told = await business_hours(ctx=ToolContext("demo", 1, "549", settings(timezone=zone), now))
    assert told.startswith(expected + " Horarios: lunes: 09:00-18:00;")
    assert told.endswith("sábado: 10:00-13:00; domingo: cerrado.")


@pytest.mark.anyio
async def test_business_hours_without_any_opening_day():
    told = await business_hours(ctx=ToolContext("demo", 1, "549", settings(opening_hours={}),
                                                datetime(2026, 3, 2, 15, tzinfo=UTC)))
    assert "el local está cerrado y no tiene horarios de apertura cargados." in told


def test_the_knowledge_files_agree_with_the_default_opening_hours():
    hours = DemoSettings.model_fields["opening_hours"].default
    assert hours == {0: "09:00-18:00", 1: "09:00-18:00", 2: "09:00-18:00", 3: "09:00-18:00", 4: "09:00-18:00",
                     5: "10:00-13:00"}
    text = (KNOWLEDGE / "horarios-y-local.md").read_text(encoding="utf-8")
    assert "de lunes a viernes de 9 a 18 y los sábados de 10 a 13. Los domingos el local está cerrado." in flat(text)
    documents = load_documents(KNOWLEDGE)
    assert sorted(d.source for d in documents) == ["cambios-y-devoluciones.md", "envios.md", "horarios-y-local.md",
                                                   "medios-de-pago.md", "preguntas-frecuentes.md", "productos.md"]
    for document in documents:
        passages = split_passages(document)
        assert len(passages) >= 3 and all(p.title and len(p.text) < 1200 for p in passages), document.source


def test_without_a_model_the_best_knowledge_passage_or_the_offline_message_is_sent(start_app: Any, graph: FakeGraph):
    app = start_app(DEMO.env(), whatsapp_api_base_url=graph.url)  # no OPENAI_API_KEY: the offline responder
    say(app, "5491160000007", "¿Hacen envíos a Palermo? ¿Cuánto cuesta?")
    [known] = wait_for(graph.texts, what="the knowledge reply")
    assert flat(known.text).startswith("Hacemos envíos a domicilio con nuestro repartidor a Villa Crespo")
    assert "El envío cuesta $2.500" in flat(known.text)

    say(app, "5491160000008", "Quiero alquilar un departamento")
    wait_for(lambda: len(graph.texts()) == 2, what="the offline reply")
    assert graph.texts()[1].text == prompts.OFFLINE_MESSAGE
