"""The console's client dashboard in a real browser: today's and 30 days' figures from the usage ledger and the
store (fallbacks), and the bot's switch (operators switch it, viewers only see it, other clients' staff get 404)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import wait_for
from tests.test_console_browser import answered, log_in, write


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    return start_console(start_app, tmp_db, graph, llm, whatsapp_pair_interval_seconds=0.02)


def bot_enabled(app: RunningApp) -> bool:
    answer = app.http.get(f"{app.url}/api/v1/demo/bot", headers={"Authorization": f"Bearer {DEMO.api_key}"})
    return bool(answer.json()["enabled"])


def test_the_dashboard_counts_todays_conversations_replies_fallbacks_tokens_and_cost(page: Page, console: RunningApp,
                                                                                     llm: FakeOpenAI):
    answered(console, DEMO, "5491100000001", "¿abren hoy?", name="Ana")
    llm.script(Reply(status=400))  # the model refuses the request: the bot answers with the fallback
    answered(console, DEMO, "5491100000002", "hola", name="Bruno")
    answered(console, EMPRENDEMY, "5491100000003", "otro cliente", name="Carla")
    log_in(page, "op@demo.example")
    page.get_by_test_id("tab-dashboard").click()
    for period in ("today", "30d"):
        expect(page.get_by_test_id(f"conversations-{period}")).to_have_text("2")
        expect(page.get_by_test_id(f"messages-{period}")).to_have_text("2")
        expect(page.get_by_test_id(f"replies-{period}")).to_have_text("2")
        expect(page.get_by_test_id(f"fallbacks-{period}")).to_have_text("1")
        # Ana: classifier and answer, 11 + 7 each; the failed turn counts none (see the report)
        expect(page.get_by_test_id(f"tokens-{period}")).to_have_text("36")
        expect(page.get_by_test_id(f"cost-{period}")).to_contain_text("US$")


def test_an_operator_switches_the_bot_off_and_on(page: Page, console: RunningApp, graph: FakeGraph):
    log_in(page, "op@demo.example")
    page.goto("/console/c/demo/dashboard")
    expect(page.get_by_test_id("bot-state")).to_have_text("on")
    page.get_by_test_id("bot-switch").click()
    expect(page.get_by_test_id("bot-state")).to_have_text("off")
    assert not bot_enabled(console)
    write(console, DEMO, "5491100000004", "¿hay alguien?", name="Dario")
    wait_for(lambda: console.conversation(DEMO, "5491100000004"), what="the message stored")
    page.get_by_test_id("bot-switch").click()
    expect(page.get_by_test_id("bot-state")).to_have_text("on")
    assert bot_enabled(console)
    assert [call for call in graph.texts() if call.body.get("to") == "5491100000004"] == []  # off: nobody answered


def test_a_viewer_sees_the_switch_but_cannot_use_it_and_other_staff_get_404(page: Page, console: RunningApp):
    log_in(page, "viewer@demo.example")
    page.goto("/console/c/demo/dashboard")
    expect(page.get_by_test_id("bot-state")).to_have_text("on")
    expect(page.get_by_test_id("bot-switch")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert page.request.post("/console/c/demo/bot", form={"csrf": csrf, "enabled": "false"}).status == 403
    page.context.clear_cookies()
    log_in(page, "op@emprendemy.example")
    assert page.goto("/console/c/demo/dashboard").status == 404  # type: ignore[union-attr]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert page.request.post("/console/c/demo/bot", form={"csrf": csrf, "enabled": "false"}).status == 404
    assert page.request.post("/console/c/emprendemy/bot", form={"csrf": "forged", "enabled": "false"}).status == 403
    assert bot_enabled(console)


def test_screenshot_of_the_dashboard(page: Page, console: RunningApp, llm: FakeOpenAI, tmp_path: Path):
    """docs/console-dashboard.png when CONSOLE_SCREENSHOTS_DIR=docs is set."""
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path)
    answered(console, DEMO, "5491100000010", "Hola, ¿abren hoy?", name="Ana Pérez")
    answered(console, DEMO, "5491100000011", "¿Hacen envíos a Córdoba?", name="Bruno Díaz")
    llm.script(Reply(status=400))
    answered(console, DEMO, "5491100000012", "Quiero hablar con alguien", name="Carla Gómez")
    log_in(page, "admin@example.com")
    page.goto("/console/c/demo/dashboard")
    expect(page.get_by_test_id("fallbacks-today")).to_have_text("1")
    page.screenshot(path=str(folder / "console-dashboard.png"), full_page=True)
