"""The inbox's extras in a real browser: unread counts per account, kept in the store and updated live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.console_support import SECRET, add_accounts, chromium, fresh_page
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.test_console_browser import answered, log_in, write


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    add_accounts(tmp_db)
    return start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url, whatsapp_pair_interval_seconds=0.02, console_secret=SECRET,
                     console_poll_seconds=0.2)


@pytest.fixture
def page(browser: Browser, console: RunningApp) -> Iterator[Page]:
    with fresh_page(browser, console.url) as opened:
        yield opened


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
