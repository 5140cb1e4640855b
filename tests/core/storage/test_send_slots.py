"""Send slots on SQLite and PostgreSQL: bookings on one number, by any worker, get send times 1 / rate apart that
never overlap, a claim takes only what the booked slots let it send within half its lease, and an idle number starts
again from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.anyio


async def broadcast_to(store: Store, phone: str, count: int, prefix: str = "5491100"):
    keys = [f"{prefix}{n:05d}" for n in range(count)]
    return await store.create_broadcast("demo", phone, "saludo", "es_AR", ["a"], {"user_keys": keys}, T0, T0)


def offsets(slots: list[datetime]) -> list[float]:
    return [round((slot - T0).total_seconds(), 6) for slot in slots]


async def test_two_workers_book_consecutive_slots_of_one_number_and_another_number_has_its_own(store: Store):
    assert offsets(await store.book_send_slots("1000", 4, T0, 10)) == [0.0, 0.1, 0.2, 0.3]
    assert offsets(await store.book_send_slots("1000", 3, T0, 10)) == [0.4, 0.5, 0.6]
    assert offsets(await store.book_send_slots("2000", 2, T0, 4)) == [0.0, 0.25]
    assert await store.book_send_slots("1000", 0, T0, 10) == []


async def test_a_claim_takes_only_what_the_free_slots_allow_within_half_its_lease(store: Store):
    broadcast = await broadcast_to(store, "1000", 100)
    # A 4 s lease: sends up to 2 s ahead, at 10 a second.
    claimed = await store.claim_recipients(broadcast.id, "w1", T0, 4, 100, rate_per_second=10)
    assert len(claimed) == 20 and all(r.lease_until == T0 + timedelta(seconds=4) for r in claimed)
    await store.book_send_slots("1000", 15, T0, 10)  # 1.5 s booked: 5 more fit
    assert len(await store.claim_recipients(broadcast.id, "w2", T0, 4, 100, rate_per_second=10)) == 5
    await store.book_send_slots("1000", 5, T0, 10)
    assert await store.claim_recipients(broadcast.id, "w2", T0, 4, 100, rate_per_second=10) == []
    later = await store.claim_recipients(broadcast.id, "w2", T0 + timedelta(seconds=1), 4, 100, rate_per_second=10)
    assert len(later) == 10
    counts = await store.broadcast_counts(broadcast.id)
    assert (counts.sending, counts.queued) == (35, 65)  # what no slot was found for stays queued, in order


async def test_an_idle_number_starts_again_from_now(store: Store):
    await store.book_send_slots("1000", 2, T0, 10)
    later = T0 + timedelta(seconds=30)
    assert await store.book_send_slots("1000", 2, later, 10) == [later, later + timedelta(seconds=0.1)]
