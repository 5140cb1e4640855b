"""Unread counts in the store: per console account and conversation, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from tests.core.storage.test_store import DEBOUNCE, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


async def test_messages_in_after_an_accounts_last_look_are_unread_for_it_only(store: Store):
    ana = await store.add_console_user("ana@example.com", "h", "operator", "demo", T0)
    bob = await store.add_console_user("bob@example.com", "h", "operator", "demo", T0)
    assert ana is not None and bob is not None
    first = await store.record_inbound("demo", inbound("hola", user="5491100000001", at=T0), DEBOUNCE, T0)
    await store.record_inbound("demo", inbound("¿hay alguien?", user="5491100000001", at=T0),
                               DEBOUNCE, T0 + timedelta(seconds=1))
    other = await store.record_inbound("demo", inbound("hola", user="5491100000002", at=T0), DEBOUNCE, T0)
    ids = [first.conversation_id, other.conversation_id]
    assert await store.unread_counts(ana.id, ids) == {first.conversation_id: 2, other.conversation_id: 1}
    await store.mark_seen(ana.id, first.conversation_id, T0 + timedelta(seconds=1))
    assert await store.unread_counts(ana.id, ids) == {other.conversation_id: 1}
    assert await store.unread_counts(bob.id, ids) == {first.conversation_id: 2, other.conversation_id: 1}
    await store.record_inbound("demo", inbound("¿hola?", user="5491100000001", at=T0), DEBOUNCE,
                               T0 + timedelta(seconds=5))
    assert (await store.unread_counts(ana.id, ids))[first.conversation_id] == 1
    await store.mark_seen(ana.id, first.conversation_id, T0)  # an older page, refreshed late: no step back
    assert (await store.unread_counts(ana.id, ids))[first.conversation_id] == 1
    assert await store.unread_counts(ana.id, []) == {}
