"""The console's admin page in a real browser: every client with its numbers, send mode, model, health and last
error; for admins only."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import EMPRENDEMY, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.test_console_browser import answered, log_in


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """demo in sandbox mode, emprendemy live against the Graph stand-in."""
    return start_console(start_app, tmp_db, graph, llm, sandbox_demo=True)


def row(page: Page, client: str) -> Any:
    return page.locator(f"[data-testid=admin-client][data-client={client}]")


def test_an_admin_sees_each_clients_numbers_modes_health_and_last_error(page: Page, console: RunningApp,
                                                                          graph: FakeGraph):
    log_in(page, "admin@example.com")
    page.get_by_test_id("admin-link").click()
    expect(page).to_have_url(re.compile(r"/console/admin$"))
    expect(page.get_by_test_id("admin-client")).to_have_count(2)
    demo, emprendemy = row(page, "demo"), row(page, "emprendemy")
    expect(demo).to_contain_text("sandbox-demo")
    expect(demo.get_by_test_id("admin-send-mode")).to_have_text("sandbox")
    expect(demo.get_by_test_id("admin-llm")).to_contain_text("classifier")
    expect(demo.get_by_test_id("admin-health")).to_have_text(re.compile(r"^\s*ok\s*$"))
    expect(demo.get_by_test_id("admin-last-error")).to_have_text(re.compile(r"^\s*none\s*$"))
    expect(emprendemy).to_contain_text(EMPRENDEMY.phone_number_id)
    expect(emprendemy).to_contain_text(f"WABA {EMPRENDEMY.waba_id}")
    expect(emprendemy.get_by_test_id("admin-send-mode")).to_have_text("live")
    # A live client on a SQLite file: the deployment's warning is this client's problem.
    expect(emprendemy.get_by_test_id("admin-health")).to_contain_text("check")
    expect(emprendemy.get_by_test_id("admin-health")).to_contain_text("SQLite")

    graph.fail_next(400, 131026, "Message undeliverable", to="5491100000001")
    answered(console, EMPRENDEMY, "5491100000001", "hola", name="Ana")
    page.reload()
    expect(emprendemy.get_by_test_id("admin-last-error")).to_contain_text("Message undeliverable")
    expect(emprendemy.get_by_test_id("admin-health")).to_contain_text("1 message(s) WhatsApp refused in the last 24 h")
    expect(emprendemy.get_by_test_id("admin-health")).to_contain_text("1 conversation(s) need attention")
    expect(demo.get_by_test_id("admin-last-error")).to_have_text(re.compile(r"^\s*none\s*$"))


def test_staff_get_no_admin_page(page: Page):
    for email in ("op@demo.example", "viewer@demo.example"):
        page.context.clear_cookies()
        log_in(page, email)
        expect(page.get_by_test_id("admin-link")).to_have_count(0)
        answer = page.goto("/console/admin")
        assert answer is not None and answer.status == 403, email
        expect(page.get_by_test_id("admin-client")).to_have_count(0)


def test_screenshot_of_the_admin_page(page: Page, console: RunningApp, graph: FakeGraph, tmp_path: Path):
    """docs/console-admin.png when CONSOLE_SCREENSHOTS_DIR=docs is set."""
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path)
    graph.fail_next(400, 131026, "Message undeliverable", to="5491100000001")
    answered(console, EMPRENDEMY, "5491100000001", "hola", name="Ana")
    log_in(page, "admin@example.com")
    page.goto("/console/admin")
    expect(row(page, "emprendemy").get_by_test_id("admin-last-error")).to_contain_text("undeliverable")
    page.screenshot(path=str(folder / "console-admin.png"), full_page=True)
