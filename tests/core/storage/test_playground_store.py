"""The playground's prompts under trial in the store, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


async def test_a_prompt_is_kept_per_client_and_tester_and_replaced_by_the_next(store: Store):
    assert await store.playground_prompt("demo", "playground-1-edited") is None
    await store.set_playground_prompt("demo", "playground-1-edited", "Answer in rhymes.", T0)
    await store.set_playground_prompt("shop", "playground-1-edited", "Answer briefly.", T0)
    assert await store.playground_prompt("demo", "playground-1-edited") == "Answer in rhymes."
    await store.set_playground_prompt("demo", "playground-1-edited", "Sé breve, con ñ y emoji 🙂", T0 + timedelta(minutes=1))
    assert await store.playground_prompt("demo", "playground-1-edited") == "Sé breve, con ñ y emoji 🙂"
    assert await store.playground_prompt("shop", "playground-1-edited") == "Answer briefly."
    assert await store.playground_prompt("demo", "playground-2-edited") is None
