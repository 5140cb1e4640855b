"""Console accounts' chosen language in the store, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.storage.base import Store
from core.storage.postgres import PostgresStore
from core.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a SQLite file of the test's own, or on a fresh PostgreSQL database."""
    opened = SQLiteStore(tmp_path / "store.db") if request.param == "sqlite" \
        else PostgresStore(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


async def test_an_accounts_language_is_kept_and_changed(store: Store):
    ana = await store.add_console_user("ana@example.com", "h", "operator", "demo", T0)
    bob = await store.add_console_user("bob@example.com", "h", "admin", None, T0)
    assert ana is not None and bob is not None
    assert await store.console_language(ana.id) is None
    await store.set_console_language(ana.id, "es", T0)
    await store.set_console_language(ana.id, "en", T0 + timedelta(minutes=1))
    await store.set_console_language(bob.id, "es", T0)
    assert await store.console_language(ana.id) == "en"
    assert await store.console_language(bob.id) == "es"
