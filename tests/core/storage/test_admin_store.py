"""What the admin page reads of a client's health, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from core.storage.records import Intent, NewMessage
from tests.core.storage.test_store import DEBOUNCE, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
REFUSED = {"code": 131026, "title": "Message undeliverable"}


async def test_a_quiet_client_has_nothing_to_report(store: Store):
    facts = await store.client_facts("demo", T0 - timedelta(days=1), T0)
    assert (facts.failed_sends, facts.failed_effects, facts.overdue, facts.attention) == (0, 0, 0, 0)
    assert facts.last_send_failure is None and facts.last_effect_failure is None


async def test_failed_sends_and_effects_overdue_and_flagged_conversations_are_reported(store: Store):
    await store.record_inbound("demo", inbound("hola", user="5491100000001", at=T0), DEBOUNCE, T0)
    [claim] = await store.claim_due("owner", T0 + timedelta(seconds=5), 60, 10)
    batch = await store.pending_batch(claim.conversation.id)
    reply = NewMessage(direction="out", role="assistant", text="ok", status="pending")
    email = Intent("email", "call-1:0", {"subject": "lead", "body": "x", "reply_to": None})
    [stored] = await store.save_turn(claim, batch, "b1", [reply], T0 + timedelta(seconds=5), [email])
    await store.mark_sent(stored.id, None, "failed", REFUSED)
    await store.finish_turn(claim, T0 + timedelta(seconds=5))
    [effect] = await store.claim_effects("owner", T0 + timedelta(seconds=6), 60, 10)
    assert await store.settle_effect(effect, "owner", T0 + timedelta(seconds=6), error="SMTP refused: 550")
    await store.flag(claim.conversation.id, "the bot failed")
    # Another client's trouble is not this one's; a message waiting past its due time is the worker's backlog.
    await store.record_inbound("shop", inbound("hola", user="5491100000002", client_phone="3001", at=T0),
                               DEBOUNCE, T0)
    await store.record_inbound("demo", inbound("¿hola?", user="5491100000003", at=T0), DEBOUNCE, T0)
    later = T0 + timedelta(minutes=10)
    facts = await store.client_facts("demo", T0 - timedelta(days=1), later)
    assert (facts.failed_sends, facts.failed_effects, facts.overdue, facts.attention) == (1, 1, 1, 1)
    assert facts.last_send_failure == REFUSED and facts.last_send_failure_at == T0 + timedelta(seconds=5)
    assert facts.last_effect_failure == "SMTP refused: 550"
    assert (await store.client_facts("demo", later, later)).failed_sends == 0  # older than the period
    assert (await store.client_facts("demo", later, T0)).overdue == 0  # not due yet by then
    shop = await store.client_facts("shop", T0 - timedelta(days=1), later)
    assert (shop.failed_sends, shop.failed_effects, shop.overdue, shop.attention) == (0, 0, 1, 0)
