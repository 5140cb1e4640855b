"""What the console's browser test modules share: one chromium per module, the accounts, a fresh page per test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from core.console.passwords import hash_password
from core.storage.sqlite import SQLiteStore
from tests.test_console_browser import ACCOUNTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD

SECRET = "console-secret-for-the-browser-tests-0123456789"


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium for one module (not longer: see tests/test_console_browser.py)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)",
                    pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def add_accounts(tmp_db: str) -> None:
    """The accounts of tests/test_console_browser.py, made in the store before the app starts."""
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
