"""The console in a real browser (Playwright driving Debian's chromium, headless) against the running app."""

from __future__ import annotations

import re
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.console_support import PASSWORD, start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """Both clients live against the stand-ins, with the accounts (made in the store before the start)."""
    return start_console(start_app, tmp_db, graph, llm, whatsapp_pair_interval_seconds=0.02)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/console/login")
    page.get_by_test_id("login-email").fill(email)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def write(app: RunningApp, client: ClientIds, wa_id: str, text: str, name: str = "Ana") -> None:
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, text, name=name)
    assert app.post_webhook(delivery, client.secret).status_code == 200


def answered(app: RunningApp, client: ClientIds, wa_id: str, text: str, name: str = "Ana") -> int:
    """A message the bot answers; returns the conversation's id once it settled."""
    write(app, client, wa_id, text, name)
    wait_for(lambda: app.settled(client, wa_id), what="the bot's reply")
    return app.conversation(client, wa_id)["id"]


def test_login_refuses_a_wrong_password_and_lands_an_operator_in_their_inbox(page: Page, console: RunningApp):
    answered(console, DEMO, "5491100000001", "hola, ¿abren hoy?", name="Ana Pérez")
    page.goto("/console/c/demo")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    log_in(page, "op@demo.example", "not the password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    log_in(page, "OP@demo.example")
    expect(page).to_have_url(re.compile(r"/console/c/demo$"))
    item = page.get_by_test_id("conversation-item")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Ana Pérez")
    expect(item).to_have_attribute("data-state", "waiting")


def test_inbox_filters_and_search(page: Page, console: RunningApp):
    first = answered(console, DEMO, "5491100000001", "quiero una mesa", name="Ana")
    answered(console, DEMO, "5491100000002", "¿tienen envíos?", name="Bruno")
    assert console.http.post(f"{console.url}/api/v1/demo/conversations/{first}/takeover",
                             headers={"Authorization": f"Bearer {DEMO.api_key}"}).status_code == 200
    log_in(page, "op@demo.example")
    items = page.get_by_test_id("conversation-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Ana")  # updated last: on top
    expect(items.first).to_have_attribute("data-state", "human")
    page.get_by_test_id("filter-human").click()
    expect(items).to_have_count(1)
    expect(items).to_contain_text("Ana")
    page.goto("/console/c/demo?q=ENVÍOS")
    expect(items).to_have_count(1)
    expect(items).to_contain_text("Bruno")
    page.get_by_test_id("filter-attention").click()
    expect(page.get_by_test_id("inbox-empty")).to_be_visible()


def test_a_new_webhook_appears_in_the_open_inbox(page: Page, console: RunningApp):
    log_in(page, "op@demo.example")
    expect(page.get_by_test_id("inbox-empty")).to_be_visible()
    expect(page.locator("body[data-live=connected]")).to_have_count(1)
    write(console, DEMO, "5491100000003", "¿hay alguien?", name="Carla")
    expect(page.get_by_test_id("conversation-item")).to_contain_text("Carla", timeout=10_000)


def test_take_over_then_reply_reaches_whatsapp(page: Page, console: RunningApp, graph: FakeGraph):
    conversation = answered(console, DEMO, "5491100000004", "necesito hablar con una persona", name="Dario")
    log_in(page, "op@demo.example")
    page.get_by_test_id("conversation-item").click()
    expect(page).to_have_url(re.compile(rf"/conversations/{conversation}$"))
    expect(page.get_by_test_id("message").first).to_contain_text("necesito hablar con una persona")
    page.get_by_test_id("takeover").click()
    expect(page.get_by_test_id("release")).to_be_visible()
    expect(page.get_by_test_id("conversation-state")).to_have_text("taken over")
    page.get_by_test_id("reply-input").fill("Hola Dario, soy Laura. ¿En qué te ayudo?")
    page.get_by_test_id("reply-send").click()
    wait_for(lambda: any(call.text == "Hola Dario, soy Laura. ¿En qué te ayudo?" and call.body.get("to") == "5491100000004"
                         for call in graph.texts()), what="the operator's reply at the Graph API")
    bubble = page.get_by_test_id("message").filter(has_text="soy Laura")
    expect(bubble).to_contain_text("operator")
    expect(bubble.get_by_test_id("message-status")).to_have_text(re.compile("sent|delivered|read"))
    page.get_by_test_id("release").click()
    expect(page.get_by_test_id("takeover")).to_be_visible()


def test_staff_of_one_client_cannot_see_anothers_conversations(page: Page, console: RunningApp):
    demo_conversation = answered(console, DEMO, "5491100000005", "secreto de demo", name="Elena")
    answered(console, EMPRENDEMY, "5491100000006", "consulta de curso", name="Fede")
    log_in(page, "op@emprendemy.example")
    expect(page).to_have_url(re.compile(r"/console/c/emprendemy$"))
    expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    expect(page.get_by_test_id("conversation-item")).to_contain_text("Fede")
    for path in ("/console/c/demo", f"/console/c/demo/conversations/{demo_conversation}",
                 f"/console/c/emprendemy/conversations/{demo_conversation}"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        expect(page.get_by_text("secreto de demo")).to_have_count(0)
    csrf = _csrf(page, "/console/c/emprendemy")
    refused = page.request.post(f"/console/c/demo/conversations/{demo_conversation}/takeover", form={"csrf": csrf})
    assert refused.status == 404
    assert console.conversation(DEMO, "5491100000005")["mode"] == "bot"


def test_a_viewer_sees_no_actions_and_is_refused_if_posting(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000007", "solo mirar", name="Gabi")
    log_in(page, "viewer@demo.example")
    page.get_by_test_id("conversation-item").click()
    expect(page.get_by_test_id("message").first).to_contain_text("solo mirar")
    for testid in ("takeover", "release", "reply-input", "reply-send", "attention-clear"):
        expect(page.get_by_test_id(testid)).to_have_count(0)
    csrf = _csrf(page, f"/console/c/demo/conversations/{conversation}")
    for action in ("takeover", "reply", "resolve"):
        refused = page.request.post(f"/console/c/demo/conversations/{conversation}/{action}",
                                    form={"csrf": csrf, "text": "hola"})
        assert refused.status == 403, action
    assert console.conversation(DEMO, "5491100000007")["mode"] == "bot"


def test_a_post_without_the_sessions_csrf_token_is_refused(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000008", "hola", name="Hugo")
    log_in(page, "op@demo.example")
    refused = page.request.post(f"/console/c/demo/conversations/{conversation}/takeover", form={"csrf": "forged"})
    assert refused.status == 403
    assert console.conversation(DEMO, "5491100000008")["mode"] == "bot"


def test_an_admin_sees_the_internal_steps_and_staff_do_not(browser: Browser, page: Page, console: RunningApp,
                                                           llm: FakeOpenAI, graph: FakeGraph):
    llm.script(Reply(tool_calls=[("business_hours", {})]), Reply(content="Abrimos a las 9."))
    conversation = answered(console, DEMO, "5491100000009", "¿a qué hora abren?", name="Inés")
    path = f"/console/c/demo/conversations/{conversation}"
    log_in(page, "admin@example.com")
    page.goto(path)
    expect(page.get_by_test_id("message").filter(has_text="Abrimos a las 9.")).to_have_count(1)
    steps = page.get_by_test_id("internal-step")
    expect(steps.filter(has_text="tool_calls")).to_have_count(1)
    expect(steps.filter(has_text="tool_result")).to_have_count(1)
    expect(page.get_by_text(re.compile(r"\d+ \+ \d+ tokens")).first).to_be_visible()
    staff = browser.new_context(base_url=console.url)
    try:
        other = staff.new_page()
        log_in(other, "op@demo.example")
        other.goto(path)
        expect(other.get_by_test_id("message").filter(has_text="Abrimos a las 9.")).to_have_count(1)
        expect(other.get_by_test_id("internal-step")).to_have_count(0)
        expect(other.get_by_text(re.compile(r"tokens"))).to_have_count(0)
    finally:
        staff.close()


def test_screenshots_of_the_inbox_and_a_conversation(page: Page, console: RunningApp, llm: FakeOpenAI,
                                                     tmp_path: Path):
    """The docs' pictures, from a real run: written to docs/ only when CONSOLE_SCREENSHOTS_DIR=docs is set, so an
    ordinary run leaves the repository as it was."""
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path)
    llm.script(Reply(tool_calls=[("business_hours", {})]), Reply(content="¡Hola Ana! Hoy abrimos de 9 a 18 h."))
    conversation = answered(console, DEMO, "5491100000010", "Hola, ¿abren hoy?", name="Ana Pérez")
    answered(console, DEMO, "5491100000011", "¿Hacen envíos a Córdoba?", name="Bruno Díaz")
    taken = answered(console, DEMO, "5491100000012", "Quiero hablar con alguien", name="Carla Gómez")
    headers = {"Authorization": f"Bearer {DEMO.api_key}"}
    console.http.post(f"{console.url}/api/v1/demo/conversations/{taken}/takeover", headers=headers)
    console.http.patch(f"{console.url}/api/v1/demo/contacts/5491100000010", headers=headers,
                       json={"tags": ["mayorista", "vip"], "notes": "Compra para tres locales; prefiere WhatsApp."})
    write(console, DEMO, "5491100000012", "¿Hola?", name="Carla Gómez")
    log_in(page, "admin@example.com")
    expect(page.get_by_test_id("conversation-item")).to_have_count(3)
    expect(page.get_by_test_id("conversation-item").first).to_contain_text("new message")
    page.screenshot(path=str(folder / "console-inbox.png"))
    page.goto(f"/console/c/demo/conversations/{conversation}")
    expect(page.get_by_test_id("message")).to_have_count(2)
    page.screenshot(path=str(folder / "console-conversation.png"), full_page=True)


def _csrf(page: Page, path: str) -> str:
    """The session's CSRF token, as the page's own forms carry it."""
    page.goto(path)
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""
