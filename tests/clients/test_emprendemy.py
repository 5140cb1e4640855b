"""The emprendemy client through the whole pipeline: courses from the store, leads stored and emailed, its API."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import clients.emprendemy as emprendemy_package
from clients.emprendemy import prompts
from clients.emprendemy.catalogue import Catalogue
from tests.clients.conftest import Smtp
from tests.clients.helpers import conversation, flat, settled, system_prompt, tool_names, tool_results
from tests.conftest import EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

SEED = json.loads((Path(emprendemy_package.__file__).parent / "courses.json").read_text(encoding="utf-8"))
TOOLS = {"list_courses", "offer_courses", "search_courses", "course_details", "register_lead", "hand_over_to_person"}
STAFF = "ventas@emprendemy.test"


@pytest.fixture
def school(start_app: Any, graph: FakeGraph, llm: FakeOpenAI, smtp: Smtp) -> RunningApp:
    """The app with emprendemy live against the stand-ins, its staff emails going to the test SMTP server."""
    return start_app({**EMPRENDEMY.env(), **smtp.env("emprendemy", STAFF)}, openai_api_key="sk-test",
                     openai_base_url=llm.url, whatsapp_api_base_url=graph.url)


def say(app: RunningApp, wa_id: str, text: str) -> None:
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, wa_id, text)
    response = app.post_webhook(delivery, EMPRENDEMY.secret)
    assert response.status_code == 200 and response.json()["stored"] == 1


def turn(app: RunningApp, graph: FakeGraph, llm: FakeOpenAI, wa_id: str, text: str, *replies: Reply) -> list[str]:
    """One user message answered with the scripted replies; returns the tool results the model got, in order."""
    before, asked = len(graph.texts()), len(llm.requests)
    llm.script(*replies)
    say(app, wa_id, text)
    wait_for(lambda: len(graph.texts()) > before, what="the reply")
    wait_for(lambda: settled(app, EMPRENDEMY, wa_id), what="the conversation to settle")
    assert len(llm.requests) == asked + len(replies)
    return [result for request in llm.requests[asked + 1:] for result in tool_results(request)]


def leads(app: RunningApp) -> list[dict[str, Any]]:
    response = app.api(EMPRENDEMY, "/leads")
    assert response.status_code == 200, response.text
    return response.json()


def put_courses(app: RunningApp, body: Any, key: str | None = EMPRENDEMY.api_key) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return app.http.put(f"{app.url}/api/v1/emprendemy/courses", json=body, headers=headers)


def test_a_course_question_is_answered_from_the_catalogue_in_the_store(school: RunningApp, graph: FakeGraph,
                                                                      llm: FakeOpenAI):
    [details] = turn(school, graph, llm, "5491170000001", "¿Cuánto sale el curso de marketing digital y cuándo empieza?",
                     Reply(tool_calls=[("course_details", {"course": "MARKETING digital"})]),
                     Reply(content="Cuesta $185.000 y empieza el martes 10 de marzo. Inscribite acá: "
                                   "https://emprendemy.example/cursos/marketing-digital"))

    first = llm.requests[0]
    assert system_prompt(llm, 0) == prompts.INSTRUCTIONS.strip()
    assert "sale solo de las respuestas de las herramientas" in system_prompt(llm, 0)
    assert "decile al usuario con claridad que ese curso no lo tenemos" in flat(system_prompt(llm, 0))
    assert tool_names(first) == TOOLS
    assert details.splitlines() == [
        "Curso: Marketing digital para emprendedores (id: marketing-digital)",
        "De qué se trata: " + SEED[0]["summary"],
        "Temas: marketing, redes sociales, Instagram, publicidad, Meta Ads, Google Ads, métricas",
        "Precio: $185.000 (pesos argentinos, el curso completo)",
        "Duración: 8 semanas (16 clases de 2 horas, martes y jueves a las 19)",
        "Modalidad: online en vivo",
        "Próximo inicio: martes 10 de marzo de 2026 (2026-03-10)",
        "Inscripción: https://emprendemy.example/cursos/marketing-digital",
    ]
    [reply] = graph.texts()
    assert (reply.phone_number_id, reply.token) == (EMPRENDEMY.phone_number_id, EMPRENDEMY.token)
    assert reply.text.endswith("https://emprendemy.example/cursos/marketing-digital")


def test_listing_and_searching_ignore_case_and_accents(school: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    listed, by_topic, by_name = turn(
        school, graph, llm, "5491170000002", "¿Qué cursos tienen? Me interesa diseño",
        Reply(tool_calls=[("list_courses", {}), ("search_courses", {"query": "DISENO"}),
                          ("search_courses", {"query": "facturación electronica"})]),
        Reply(content="Tenemos ocho cursos; de diseño, «Diseño de marca e identidad visual»."))

    assert listed.splitlines()[0] == "Catálogo de Emprendemy: 8 cursos, y no hay otros."
    assert len(listed.splitlines()) == 9
    for course in SEED:
        assert f"- {course['name']} (id: {course['id']}): {course['modality']}" in listed
    assert "- Tu tienda online desde cero (id: tienda-online): a tu ritmo, 5 semanas sugeridas (20 clases grabadas), " \
           "$110.000, próximo inicio lunes 2 de marzo de 2026 (2026-03-02)" in listed
    assert by_topic.splitlines() == [
        "Cursos que coinciden con «DISENO»:",
        ("- Diseño de marca e identidad visual (id: diseno-de-marca): online en vivo, 6 semanas (6 clases de 2 horas, "
         "sábados a las 10), $140.000, próximo inicio sábado 9 de mayo de 2026 (2026-05-09)")]
    assert by_name.splitlines()[1].startswith("- Monotributo y facturación sin vueltas (id: monotributo-y-facturacion)")
    assert len(by_name.splitlines()) == 2


def test_a_course_that_does_not_exist_is_said_not_to(school: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    details, searched = turn(
        school, graph, llm, "5491170000003", "Quiero info del curso de cocina vegana",
        Reply(tool_calls=[("course_details", {"course": "Cocina vegana"}), ("search_courses", {"query": "cocina"})]),
        Reply(content="Ese curso no lo tenemos. Te cuento los que sí hay."))

    names = "; ".join(course["name"] for course in SEED)
    assert details == ("Error: No hay ningún curso llamado «Cocina vegana» en el catálogo de Emprendemy: ese curso no "
                       f"existe. No lo inventes; decíselo al usuario y ofrecé los que sí existen: {names}.")
    assert searched == ("No hay ningún curso sobre «cocina» en el catálogo de Emprendemy: ese curso no existe. No lo "
                        f"inventes; decíselo al usuario y ofrecé los que sí existen: {names}.")


def test_a_lead_is_stored_and_emailed_to_staff(school: RunningApp, graph: FakeGraph, llm: FakeOpenAI, smtp: Smtp):
    [registered] = turn(
        school, graph, llm, "5491170000004", "Soy Ana Pérez, ana.perez@example.com, quiero el de finanzas",
        Reply(tool_calls=[("register_lead", {"name": " Ana  Pérez ", "email": "ana.perez@Example.COM",
                                             "course": "finanzas"})]),
        Reply(content="¡Listo, Ana! Un asesor te escribe a tu email."))

    found = conversation(school, EMPRENDEMY, "5491170000004")
    [lead] = leads(school)
    assert re.fullmatch(r"L-[0-9A-F]{6}", lead["ref"])
    assert registered == ("Listo: Ana Pérez (ana.perez@example.com) quedó registrado como interesado en «Finanzas para "
                          f"emprendedores» (referencia {lead['ref']}). Un asesor le va a escribir a ese email. Link de "
                          "inscripción: https://emprendemy.example/cursos/finanzas-para-emprender")
    assert (lead["id"], lead["conversation_id"]) == (1, found["id"])
    assert lead["data"] == {"name": "Ana Pérez", "email": "ana.perez@example.com", "course_id": "finanzas-para-emprender",
                            "course_name": "Finanzas para emprendedores", "whatsapp": "5491170000004",
                            "contact_name": "Ana"}

    [email] = wait_for(lambda: smtp.mailbox.received, what="the staff email")
    assert (email.mail_from, email.rcpt_tos) == ("bot@emprendemy.test", [STAFF])
    assert email.message["Subject"] == "Nuevo lead: Ana Pérez - Finanzas para emprendedores"
    assert email.message["Reply-To"] == "ana.perez@example.com"  # staff answer the lead directly
    body = email.message.get_content().splitlines()
    for line in ("Nombre: Ana Pérez", "Email: ana.perez@example.com",
                 "Curso: Finanzas para emprendedores (finanzas-para-emprender)",
                 "WhatsApp: 5491170000004 (perfil de WhatsApp: Ana)",
                 f"Conversación: {found['id']} (GET /api/v1/emprendemy/conversations/{found['id']}/messages)",
                 f"Referencia del lead: {lead['ref']}"):
        assert line in body


def test_invalid_lead_data_is_refused_with_reasons_and_nothing_is_stored_or_sent(
        school: RunningApp, graph: FakeGraph, llm: FakeOpenAI, smtp: Smtp):
    bad_email, no_name, no_course = turn(
        school, graph, llm, "5491170000005", "Anotame: Ana, ana@gmail, curso de marketing",
        Reply(tool_calls=[("register_lead", {"name": "Ana", "email": "ana@gmail", "course": "marketing-digital"}),
                          ("register_lead", {"name": "  ", "email": "ana@gmail.com", "course": "marketing-digital"}),
                          ("register_lead", {"name": "Ana", "email": "ana@gmail.com", "course": "cocina"})]),
        Reply(content="Revisá tu email: «ana@gmail» no parece completo."))

    assert bad_email == ("Error: «ana@gmail» is not a valid email address (it should look like nombre@dominio.com): "
                         "nothing was registered. Ask the user to check it and send it again.")
    assert no_name == "Error: the name is empty: ask the user for their name before registering them"
    assert no_course.startswith("Error: No hay ningún curso llamado «cocina» en el catálogo de Emprendemy")
    assert leads(school) == []

    # The user corrects the address: that lead, and only that one, is stored and emailed.
    [registered] = turn(
        school, graph, llm, "5491170000005", "Perdón: ana@gmail.com",
        Reply(tool_calls=[("register_lead", {"name": "Ana", "email": "ana@gmail.com", "course": "marketing-digital"})]),
        Reply(content="¡Ahora sí, Ana!"))
    assert registered.startswith("Listo: Ana (ana@gmail.com) quedó registrado")
    assert [lead["data"]["email"] for lead in leads(school)] == ["ana@gmail.com"]
    wait_for(lambda: smtp.mailbox.received, what="the staff email")
    assert [email.message["Subject"] for email in smtp.mailbox.received] == [
        "Nuevo lead: Ana - Marketing digital para emprendedores"]


@pytest.mark.parametrize("email", ["ana", "ana@", "@gmail.com", "ana @gmail.com", "ana@gmail..com", "ana..p@gmail.com",
                                   ".ana@gmail.com", "ana@gmail.c", "ana@-gmail.com"])
def test_emails_that_are_not_real_looking_are_refused(email: str):
    from clients.emprendemy.tools import _clean_email
    from core.llm.tools import ToolError

    with pytest.raises(ToolError, match="is not a valid email address"):
        _clean_email(email)


def test_the_courses_api_needs_the_key_validates_and_changes_what_the_bot_says(
        school: RunningApp, graph: FakeGraph, llm: FakeOpenAI):
    base = f"{school.url}/api/v1/emprendemy"
    assert school.http.get(base + "/courses").status_code == 401
    assert school.api(EMPRENDEMY, "/courses", key="wrong").status_code == 401
    assert school.http.get(base + "/leads").status_code == 401
    assert put_courses(school, SEED, key=None).status_code == 401
    assert put_courses(school, SEED, key="wrong").status_code == 401

    got = school.api(EMPRENDEMY, "/courses")
    assert got.status_code == 200
    assert got.json() == SEED

    # Bad data: 422 with every reason, and the stored catalogue is untouched.
    broken = copy.deepcopy(SEED)
    broken[0]["price_ars"] = -5
    broken[1]["enrollment_url"] = "no es una url"
    broken[2]["next_start"] = "2026-02-30"
    broken[3]["modality"] = "presencial"
    del broken[4]["name"]
    response = put_courses(school, broken)
    assert response.status_code == 422
    reasons = {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}
    assert reasons[("body", 0, "price_ars")] == "Input should be greater than 0"
    assert reasons[("body", 1, "enrollment_url")].startswith("Input should be a valid URL")
    assert reasons[("body", 2, "next_start")].startswith("Input should be a valid date")
    assert reasons[("body", 3, "modality")] == "Input should be 'online en vivo' or 'a tu ritmo'"
    assert reasons[("body", 4, "name")] == "Field required"
    duplicated = put_courses(school, [*SEED, {**SEED[0], "name": "Otro nombre"}, {**SEED[1], "id": "otro-id",
                                                                                 "name": "FINANZAS para emprendedores"}])
    assert duplicated.status_code == 422
    assert [(error["loc"], error["msg"]) for error in duplicated.json()["detail"]] == [
        (["body", 8, "id"], "duplicate course id 'marketing-digital' (also course 0)"),
        (["body", 9, "name"], "duplicate course name 'FINANZAS para emprendedores' (also course 1)")]
    empty = put_courses(school, [])
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body"]
    assert put_courses(school, {"courses": SEED}).status_code == 422
    assert school.api(EMPRENDEMY, "/courses").json() == SEED

    # A new catalogue: a new price and a new course, answered from the next tool call on.
    changed = copy.deepcopy(SEED)
    changed[0]["price_ars"] = 199000
    changed.append({"id": "oratoria", "name": "Oratoria para presentar tu proyecto",
                    "summary": "Presentá tu emprendimiento con seguridad ante clientes e inversores.",
                    "price_ars": 88000, "duration": "4 semanas (4 clases de 2 horas, sábados a las 11)",
                    "modality": "online en vivo", "next_start": "2026-06-06",
                    "enrollment_url": "https://emprendemy.example/cursos/oratoria"})
    stored = put_courses(school, changed)
    assert stored.status_code == 200
    assert stored.json() == [{**course, "topics": course.get("topics", [])} for course in changed]
    assert school.api(EMPRENDEMY, "/courses").json() == stored.json()

    price, new = turn(school, graph, llm, "5491170000006", "¿Precio de marketing digital? ¿Y tienen oratoria?",
                      Reply(tool_calls=[("course_details", {"course": "marketing-digital"}),
                                        ("course_details", {"course": "oratoria"})]),
                      Reply(content="Marketing digital sale $199.000 y sí, tenemos Oratoria."))
    assert "Precio: $199.000 (pesos argentinos, el curso completo)" in price.splitlines()
    assert new.splitlines()[0] == "Curso: Oratoria para presentar tu proyecto (id: oratoria)"
    assert "Próximo inicio: sábado 6 de junio de 2026 (2026-06-06)" in new.splitlines()
    assert "Inscripción: https://emprendemy.example/cursos/oratoria" in new.splitlines()


def test_the_seed_catalogue_is_valid_and_plausible():
    courses = Catalogue.model_validate(SEED).root
    assert 6 <= len(courses) <= 8
    assert {course.modality for course in courses} == {"online en vivo", "a tu ritmo"}
    for course in courses:
        assert str(course.enrollment_url) == f"https://emprendemy.example/cursos/{course.id}"
        assert course.next_start.year in (2026, 2027)


def test_a_lead_given_twice_is_one_lead_and_a_conversation_registers_at_most_three_a_day(
        school: RunningApp, graph: FakeGraph, llm: FakeOpenAI, smtp: Smtp):
    wa_id = "5491170000009"

    def register(*emails: str) -> Reply:
        return Reply(tool_calls=[("register_lead", {"name": "Ana", "email": email, "course": "finanzas"})
                                 for email in emails])

    # The model calls the tool twice with the same data (issue 9, finding 4): one lead, one email, one reference.
    first, again = turn(school, graph, llm, wa_id, "registrame", register("ana@example.com", "ana@example.com"),
                        Reply(content="Listo."))
    [lead] = leads(school)
    assert f"(referencia {lead['ref']})" in first and f"(referencia {lead['ref']})" in again
    assert "ya estaba registrado" in again
    turn(school, graph, llm, wa_id, "y a mi socia", register("bea@example.com"), Reply(content="Listo."))
    turn(school, graph, llm, wa_id, "y a mi hermana", register("cata@example.com"), Reply(content="Listo."))
    [refused] = turn(school, graph, llm, wa_id, "y a mi prima", register("dora@example.com"), Reply(content="No pude."))
    assert refused.startswith("Error: this conversation already registered 3 lead records in the last 24 hours")
    assert [lead["data"]["email"] for lead in leads(school)] == ["ana@example.com", "bea@example.com",
                                                                 "cata@example.com"]
    wait_for(lambda: len(smtp.mailbox.received) == 3, what="three staff emails")
    assert sorted(email.message["Reply-To"] for email in smtp.mailbox.received) == [
        "ana@example.com", "bea@example.com", "cata@example.com"]


def test_a_huge_offset_for_leads_is_a_422_not_a_500(school: RunningApp):
    response = school.api(EMPRENDEMY, f"/leads?offset={10**30}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]
