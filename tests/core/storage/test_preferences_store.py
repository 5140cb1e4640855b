"""Console accounts' chosen language in the store, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


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
