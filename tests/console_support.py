"""What the console's browser test modules share: one chromium per module, the accounts, a fresh page per test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from core.console.passwords import hash_password
from core.storage.sqlite import SQLiteStore
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI

SECRET = "console-secret-for-the-browser-tests-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
# (email, role, client) of the accounts every test starts with.
ACCOUNTS = [("admin@example.com", "admin", None), ("op@demo.example", "operator", "demo"),
            ("viewer@demo.example", "viewer", "demo"), ("op@emprendemy.example", "operator", "emprendemy")]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium for one module's tests. Not longer: Playwright's sync API keeps an event loop running in
    this thread while it lives, and a later module's asyncio.run() in the same xdist worker would fail."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)",
                    pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def add_accounts(tmp_db: str) -> None:
    """The ACCOUNTS above, made in the store before the app starts."""
    async def add() -> None:
        store = SQLiteStore(Path(tmp_db.removeprefix("sqlite:///")))
        await store.open()
        try:
            for email, role, client in ACCOUNTS:
                await store.add_console_user(email, hash_password(PASSWORD), role, client, datetime.now(UTC))
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop running in this thread
        thread.submit(asyncio.run, add()).result()


@contextmanager
def fresh_page(browser: Browser, url: str) -> Iterator[Page]:
    """A new context (no cookies); closed before the app stops, so no live stream holds it."""
    context = browser.new_context(base_url=url, viewport={"width": 1100, "height": 760})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def start_console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI, *, sandbox_demo: bool = False,
                  **settings: Any) -> RunningApp:
    """The app with the accounts above, the model and Graph stand-ins, fast live updates; emprendemy live, demo live
    too unless `sandbox_demo` (no access token: sandbox mode, with its real number and app secret kept)."""
    add_accounts(tmp_db)
    demo = {key: value for key, value in DEMO.env().items() if not (sandbox_demo and key == "DEMO_ACCESS_TOKEN")}
    return start_app({**demo, **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url, console_secret=SECRET, console_poll_seconds=0.2, **settings)
