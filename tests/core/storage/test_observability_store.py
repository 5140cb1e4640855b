"""The store's reads for /metrics and /ready, on both databases: the backlog per client and the migrations applied."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.storage.base import Store
from core.storage.migrate import migrations
from core.storage.postgres import PostgresStore
from core.storage.records import ClientBacklog, Intent, NewMessage
from tests.core.storage.test_store import DEBOUNCE, T0, inbound

pytestmark = pytest.mark.anyio


async def test_nothing_waiting_is_an_empty_backlog(store: Store):
    assert await store.backlog(T0) == []


async def test_due_conversations_are_counted_with_the_earliest_due_time_per_client(store: Store):
    await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
    await store.record_inbound("demo", inbound(user="2"), DEBOUNCE, T0 + timedelta(seconds=10))
    await store.record_inbound("other", inbound(user="3", client_phone="2002"), DEBOUNCE, T0 + timedelta(seconds=20))
    # Due at T0+3 s, T0+13 s and T0+23 s (the debounce): by T0+15 s two of demo's are due, none of other's yet.
    assert await store.backlog(T0 + timedelta(seconds=15)) == [
        ClientBacklog("demo", due=2, oldest_due_at=T0 + timedelta(seconds=3))]
    assert await store.backlog(T0 + timedelta(seconds=30)) == [
        ClientBacklog("demo", due=2, oldest_due_at=T0 + timedelta(seconds=3)),
        ClientBacklog("other", due=1, oldest_due_at=T0 + timedelta(seconds=23))]


async def test_flags_and_pending_effects_are_counted_until_resolved_and_done(store: Store):
    first = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
    [claim] = await store.claim_due("owner", T0 + timedelta(seconds=5), 60, 10)
    batch = await store.pending_batch(claim.conversation.id)
    email = Intent("email", "call_1:1", {"subject": "s", "body": "b", "reply_to": None})
    stored = await store.save_turn(claim, batch, "batch-1", [NewMessage(direction="out", role="assistant", text="ok",
                                                                        status="pending")], T0, [email])
    for message in stored:
        await store.mark_sent(message.id, f"wamid.{message.id}", "sent", None)
    await store.finish_turn(claim, T0)
    await store.flag(first.conversation_id, "a person should look")
    now = T0 + timedelta(seconds=6)
    assert await store.backlog(now) == [ClientBacklog("demo", needing_attention=1, effects_pending=1)]
    await store.resolve("demo", first.conversation_id, now)
    [effect] = await store.claim_effects("runner", now, 60, 10)
    await store.settle_effect(effect, "runner", now)
    assert await store.backlog(now) == []


async def test_applied_migrations_on_postgres_are_every_file(postgres_url: str):
    # Postgres only: SQLite has no migrations table, its schema is made when the store opens.
    opened = PostgresStore(postgres_url)
    await opened.open()
    try:
        assert await opened.applied_migrations() == {migration.version for migration in migrations()}
    finally:
        await opened.close()
