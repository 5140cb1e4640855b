"""The console's playground in a real browser: a tester's message goes through the real webhook to a sandbox
client's bot; an edited prompt answers beside the saved one and never reaches a WhatsApp user; a live client and
a viewer get no playground."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for
from tests.test_console_browser import log_in

EDITED = "Sos un asistente de prueba: respondé siempre con una rima."


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """demo in sandbox mode (no access token; a real number and app secret too), emprendemy live."""
    return start_console(start_app, tmp_db, graph, llm, sandbox_demo=True)


def system_prompts(llm: FakeOpenAI) -> list[str]:
    return [request["messages"][0]["content"] for request in llm.requests]


def test_a_playground_exchange_shows_the_reply_its_tool_calls_category_tokens_and_timing(page: Page,
                                                                                        llm: FakeOpenAI):
    llm.script(Reply(tool_calls=[("business_hours", {})]), Reply(content="Abrimos de 9 a 18 h."))
    log_in(page, "op@demo.example")
    page.get_by_test_id("tab-playground").click()
    expect(page).to_have_url(re.compile(r"/console/c/demo/playground$"))
    page.get_by_test_id("playground-input").fill("¿Abren hoy?")
    page.get_by_test_id("playground-send").click()
    expect(page.get_by_test_id("playground-said")).to_have_text("¿Abren hoy?")
    reply = page.get_by_test_id("playground-reply")
    expect(reply).to_have_text("Abrimos de 9 a 18 h.", timeout=10_000)  # arrives live, no reload
    facts = page.get_by_test_id("playground-facts")
    expect(facts.get_by_test_id("playground-tool")).to_have_text("business_hours({})")
    expect(facts).to_contain_text(re.compile(r"category \w+"))
    expect(facts).to_contain_text("33 + 21 tokens")  # classifier, tool round, answer: 11 + 7 each
    expect(facts.get_by_test_id("playground-seconds")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.get_by_test_id("playground-edited")).to_have_count(0)


def test_an_edited_prompt_answers_beside_the_saved_one_and_never_a_whatsapp_user(page: Page, console: RunningApp,
                                                                                 llm: FakeOpenAI):
    log_in(page, "admin@example.com")
    page.goto("/console/c/demo/playground")
    saved_prompt = page.get_by_test_id("playground-prompt").input_value()
    assert saved_prompt.startswith("Sos") or saved_prompt  # the client's base prompt, shown for editing
    page.get_by_text("System prompt").click()
    page.get_by_test_id("playground-prompt").fill(EDITED)
    page.get_by_test_id("playground-input").fill("hola")
    page.get_by_test_id("playground-send").click()
    expect(page.get_by_test_id("playground-saved").get_by_test_id("playground-reply")).to_have_text("echo: hola")
    expect(page.get_by_test_id("playground-edited").get_by_test_id("playground-reply")).to_have_text("echo: hola")
    wait_for(lambda: len(llm.requests) == 2, what="both answers")
    prompts = system_prompts(llm)
    assert sum(prompt.startswith(EDITED) for prompt in prompts) == 1
    assert sum(prompt.startswith(saved_prompt) for prompt in prompts) == 1
    # The edit stays on the page for the next try, and is not the client's prompt: a WhatsApp user gets the saved one.
    expect(page.get_by_test_id("playground-prompt")).to_have_value(EDITED)
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491100000099", "hola", name="Cliente real")
    assert console.post_webhook(delivery, DEMO.secret).status_code == 200
    wait_for(lambda: len(llm.requests) == 3, what="the WhatsApp user's answer")
    assert system_prompts(llm)[2].startswith(saved_prompt)
    assert not system_prompts(llm)[2].startswith(EDITED)


def test_a_live_client_has_no_playground_and_a_post_sends_nothing(page: Page, console: RunningApp, graph: FakeGraph,
                                                                  llm: FakeOpenAI):
    log_in(page, "op@emprendemy.example")
    page.get_by_test_id("tab-playground").click()
    expect(page.get_by_test_id("playground-unavailable")).to_contain_text("is live")
    expect(page.get_by_test_id("playground-input")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    refused = page.request.post("/console/c/emprendemy/playground", form={"csrf": csrf, "text": "hola"})
    assert refused.status == 409
    assert "only talks to clients in sandbox mode" in refused.text()
    assert llm.requests == [] and graph.texts() == []


def test_a_viewer_and_another_clients_staff_get_no_playground(page: Page, console: RunningApp, llm: FakeOpenAI):
    log_in(page, "viewer@demo.example")
    expect(page.get_by_test_id("tab-inbox")).to_be_visible()
    expect(page.get_by_test_id("tab-playground")).to_have_count(0)
    assert page.goto("/console/c/demo/playground").status == 403  # type: ignore[union-attr]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert page.request.post("/console/c/demo/playground", form={"csrf": csrf, "text": "hola"}).status == 403
    page.context.clear_cookies()
    log_in(page, "op@emprendemy.example")
    assert page.goto("/console/c/demo/playground").status == 404  # type: ignore[union-attr]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert page.request.post("/console/c/demo/playground", form={"csrf": csrf, "text": "hola"}).status == 404
    assert page.request.post("/console/c/demo/playground", form={"csrf": "forged", "text": "hola"}).status == 404
    assert llm.requests == []


def test_a_post_without_the_csrf_token_is_refused(page: Page, llm: FakeOpenAI):
    log_in(page, "op@demo.example")
    assert page.request.post("/console/c/demo/playground", form={"csrf": "forged", "text": "hola"}).status == 403
    assert llm.requests == []


def test_screenshot_of_the_playground(page: Page, llm: FakeOpenAI, tmp_path: Path):
    """docs/console-playground.png when CONSOLE_SCREENSHOTS_DIR=docs is set."""
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path)
    llm.script(Reply(tool_calls=[("business_hours", {})]), Reply(content="¡Hola! Hoy abrimos de 9 a 18 h."),
               Reply(content="Hoy abrimos a las nueve, ¡y te esperamos con buena rima!"))
    log_in(page, "admin@example.com")
    page.goto("/console/c/demo/playground")
    page.get_by_text("System prompt").click()
    page.get_by_test_id("playground-prompt").fill(EDITED)
    page.get_by_test_id("playground-input").fill("Hola, ¿abren hoy?")
    page.get_by_test_id("playground-send").click()
    expect(page.get_by_test_id("playground-reply")).to_have_count(2)
    expect(page.get_by_test_id("playground-facts")).to_have_count(2)
    page.screenshot(path=str(folder / "console-playground.png"), full_page=True)
