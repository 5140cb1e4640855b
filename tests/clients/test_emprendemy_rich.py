"""Emprendemy's course list as a WhatsApp list message: sent before the answer, in Meta's limits; a choice comes back
to the model with the course's full name."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import clients.emprendemy as emprendemy_package
from tests.clients.helpers import settled, tool_results
from tests.conftest import EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import new_wamid, text_delivery, wait_for

SEED = json.loads((Path(emprendemy_package.__file__).parent / "courses.json").read_text(encoding="utf-8"))


def test_the_courses_go_as_a_list_and_a_choice_reaches_the_model(start_app: Any, graph: FakeGraph, llm: FakeOpenAI):
    app: RunningApp = start_app(EMPRENDEMY.env(), openai_api_key="sk-test", openai_base_url=llm.url,
                                whatsapp_api_base_url=graph.url)
    wa_id = "5491170009001"
    llm.script(Reply(tool_calls=[("offer_courses", {})]), Reply(content="¡Elegí el que te guste!"))
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, wa_id, "¿Qué cursos tienen?")
    assert app.post_webhook(delivery, EMPRENDEMY.secret).status_code == 200
    wait_for(lambda: settled(app, EMPRENDEMY, wa_id), what="the turn")

    sends = [call.body for call in graph.calls if call.body.get("to") == wa_id and "type" in call.body]
    assert [body["type"] for body in sends] == ["interactive", "text"]
    listed = sends[0]["interactive"]
    assert (listed["type"], listed["action"]["button"]) == ("list", "Ver cursos")
    [section] = listed["action"]["sections"]
    rows = section["rows"]
    assert [row["id"] for row in rows] == [c["id"] for c in sorted(SEED, key=lambda c: c["next_start"])]
    assert all(len(row["title"]) <= 24 and len(row["description"]) <= 72 for row in rows)
    assert rows[0] == {"id": "tienda-online", "title": "Tu tienda online desde…",
                       "description": "Tu tienda online desde cero · $110.000"}
    [result] = tool_results(llm.requests[1])
    assert result.startswith("Sent to the user as a WhatsApp list message")

    # The person taps a row: the model reads its title and description, the full name among them.
    llm.script(Reply(content="¡Buena elección!"))
    chosen = {"object": "whatsapp_business_account", "entry": [{"id": EMPRENDEMY.waba_id, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491100000000", "phone_number_id": EMPRENDEMY.phone_number_id},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": new_wamid(), "timestamp": str(int(time.time())), "type": "interactive",
                          "interactive": {"type": "list_reply", "list_reply": {
                              "id": rows[0]["id"], "title": rows[0]["title"], "description": rows[0]["description"]}}}]}}]}]}
    assert app.post_webhook(chosen, EMPRENDEMY.secret).status_code == 200
    wait_for(lambda: len(llm.requests) == 3, what="the model asked about the choice")
    assert llm.requests[2]["messages"][-1] == {
        "role": "user", "content": "Tu tienda online desde… - Tu tienda online desde cero · $110.000"}
