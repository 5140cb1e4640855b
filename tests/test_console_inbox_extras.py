"""The inbox's and conversation page's extras in a real browser: unread counts per account (kept in the store,
updated live); the 24 h window shown and an approved template sent from the conversation page."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import DEMO, RunningApp
from tests.console_support import fresh_page, start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import text_delivery, wait_for
from tests.test_console_browser import answered, log_in, write
from tests.test_templates import TEMPLATES, TWO_DAYS


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    graph.templates[DEMO.waba_id] = [dict(item) for item in TEMPLATES]
    return start_console(start_app, tmp_db, graph, llm, whatsapp_pair_interval_seconds=0.02)


def item(page: Page, name: str) -> Any:
    return page.get_by_test_id("conversation-item").filter(has_text=name)


def test_unread_counts_are_per_account_cleared_by_opening_and_updated_live(browser: Browser, page: Page,
                                                                           console: RunningApp):
    answered(console, DEMO, "5491100000001", "hola", name="Ana")
    write(console, DEMO, "5491100000002", "¿hay envíos?", name="Bruno")
    write(console, DEMO, "5491100000002", "¿a Córdoba?", name="Bruno")
    log_in(page, "op@demo.example")
    expect(item(page, "Ana").get_by_test_id("unread")).to_have_text("1")
    expect(item(page, "Bruno").get_by_test_id("unread")).to_have_text("2")
    item(page, "Ana").click()
    expect(page.get_by_test_id("message").first).to_contain_text("hola")
    page.goto("/console/c/demo")
    expect(item(page, "Ana").get_by_test_id("unread")).to_have_count(0)
    expect(item(page, "Bruno").get_by_test_id("unread")).to_have_text("2")
    write(console, DEMO, "5491100000001", "¿siguen ahí?", name="Ana")  # arrives while the inbox is open
    expect(item(page, "Ana").get_by_test_id("unread")).to_have_text("1", timeout=10_000)
    # Another account has seen nothing yet.
    with fresh_page(browser, console.url) as admin:
        log_in(admin, "admin@example.com")
        expect(item(admin, "Ana").get_by_test_id("unread")).to_have_text("2")
        expect(item(admin, "Bruno").get_by_test_id("unread")).to_have_text("2")


def silent(app: RunningApp, wa_id: str) -> int:
    """A person who last wrote two days ago (a delivery Meta retried late): the window is closed."""
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "¿Me confirman el turno?", name="Marta",
                             timestamp=int(time.time() - TWO_DAYS))
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200
    return wait_for(lambda: (c := app.conversation(DEMO, wa_id)) and c["needs_attention"] and c["id"], what="the flag")


def test_outside_the_window_an_operator_sends_an_approved_template_with_its_parameters(page: Page,
                                                                                       console: RunningApp,
                                                                                       graph: FakeGraph):
    conversation = silent(console, "5491100000030")
    log_in(page, "op@demo.example")
    page.goto(f"/console/c/demo/conversations/{conversation}")
    expect(page.get_by_test_id("window")).to_contain_text("window closed")
    choices = page.get_by_test_id("template-choice").locator("option")
    expect(choices).to_have_text(["pedido_listo (es_AR, utility)", "recordatorio_turno (en_US, utility)",
                                  "recordatorio_turno (es_AR, utility)"])  # approved ones only, by name
    page.get_by_test_id("template-choice").select_option("recordatorio_turno|es_AR")
    page.get_by_test_id("template-choose").click()
    expect(page.get_by_test_id("template-preview")).to_contain_text("Hola {{1}}, te esperamos el {{2}}")
    fields = page.get_by_test_id("template-parameter")
    expect(fields).to_have_count(3)
    fields.nth(0).fill("Marta")
    fields.nth(1).fill("lunes")
    page.get_by_test_id("template-send").click()  # one missing: refused, naming it, nothing sent
    expect(page.get_by_test_id("action-error")).to_contain_text("body.3")
    assert graph.template_sends() == []
    fields = page.get_by_test_id("template-parameter")
    fields.nth(0).fill("Marta")
    fields.nth(1).fill("lunes")
    fields.nth(2).fill("17:30")
    page.get_by_test_id("template-send").click()
    [sent] = wait_for(graph.template_sends, what="the template at the Graph API")
    assert sent.body["to"] == "5491100000030" and sent.body["template"]["name"] == "recordatorio_turno"
    assert [p["text"] for p in sent.body["template"]["components"][0]["parameters"]] == ["Marta", "lunes", "17:30"]
    bubble = page.get_by_test_id("message").filter(has_text="Hola Marta, te esperamos el lunes a las 17:30.")
    expect(bubble).to_contain_text("operator")


def test_inside_the_window_the_page_says_until_when_and_viewers_get_no_template_form(page: Page,
                                                                                   console: RunningApp):
    conversation = answered(console, DEMO, "5491100000031", "hola", name="Nora")
    log_in(page, "op@demo.example")
    page.goto(f"/console/c/demo/conversations/{conversation}")
    expect(page.get_by_test_id("window")).to_contain_text(re.compile(r"window open: .* until .* \(23 h 5\d min left\)"))
    expect(page.get_by_test_id("template-section")).to_be_visible()
    page.context.clear_cookies()
    log_in(page, "viewer@demo.example")
    page.goto(f"/console/c/demo/conversations/{conversation}")
    expect(page.get_by_test_id("window")).to_contain_text("window open")
    expect(page.get_by_test_id("template-section")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    refused = page.request.post(f"/console/c/demo/conversations/{conversation}/template",
                                form={"csrf": csrf, "template": "pedido_listo|es_AR", "p.nombre": "x", "p.pedido": "1"})
    assert refused.status == 403
