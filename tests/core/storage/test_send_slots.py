"""Send slots on SQLite and PostgreSQL: claims on one number, by any worker, get send times 1 / rate apart that never
overlap, a claim takes only what it can send within half its lease, and an idle number starts again from now."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.storage.base import Store
from core.storage.postgres import PostgresStore
from core.storage.sqlite import SQLiteStore

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = SQLiteStore(tmp_path / "store.db") if request.param == "sqlite" else \
        PostgresStore(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


async def broadcast_to(store: Store, phone: str, count: int, prefix: str = "5491100"):
    keys = [f"{prefix}{n:05d}" for n in range(count)]
    return await store.create_broadcast("demo", phone, "saludo", "es_AR", ["a"], {"user_keys": keys}, T0, T0)


def offsets(recipients) -> list[float]:
    return [round((r.not_before - T0).total_seconds(), 6) for r in recipients]


async def test_two_workers_get_consecutive_slots_of_one_number(store: Store):
    broadcast = await broadcast_to(store, "1000", 10)
    first = await store.claim_recipients(broadcast.id, "w1", T0, 60, 4, rate_per_second=10)
    second = await store.claim_recipients(broadcast.id, "w2", T0, 60, 4, rate_per_second=10)
    assert offsets(first) == [0.0, 0.1, 0.2, 0.3]
    assert offsets(second) == [0.4, 0.5, 0.6, 0.7]
    assert all(r.lease_until == T0 + timedelta(seconds=60) for r in first + second)


async def test_two_broadcasts_on_one_number_share_its_slots_and_another_number_has_its_own(store: Store):
    one = await broadcast_to(store, "1000", 3)
    two = await broadcast_to(store, "1000", 3, prefix="5491200")
    other = await broadcast_to(store, "2000", 3, prefix="5491300")
    assert offsets(await store.claim_recipients(one.id, "w1", T0, 60, 3, rate_per_second=4)) == [0.0, 0.25, 0.5]
    assert offsets(await store.claim_recipients(two.id, "w2", T0, 60, 3, rate_per_second=4)) == [0.75, 1.0, 1.25]
    assert offsets(await store.claim_recipients(other.id, "w1", T0, 60, 3, rate_per_second=4)) == [0.0, 0.25, 0.5]


async def test_a_claim_takes_only_the_slots_within_half_its_lease(store: Store):
    broadcast = await broadcast_to(store, "1000", 100)
    # A 4 s lease: slots up to 2 s ahead, at 10 a second.
    assert len(await store.claim_recipients(broadcast.id, "w1", T0, 4, 100, rate_per_second=10)) == 20
    assert await store.claim_recipients(broadcast.id, "w2", T0, 4, 100, rate_per_second=10) == []
    later = await store.claim_recipients(broadcast.id, "w2", T0 + timedelta(seconds=1), 4, 100, rate_per_second=10)
    assert offsets(later)[:2] == [2.0, 2.1] and len(later) == 10
    counts = await store.broadcast_counts(broadcast.id)
    assert (counts.sending, counts.queued) == (30, 70)  # what no slot was found for stays queued, in order


async def test_an_idle_number_starts_again_from_now(store: Store):
    broadcast = await broadcast_to(store, "1000", 4)
    await store.claim_recipients(broadcast.id, "w1", T0, 60, 2, rate_per_second=10)
    later = T0 + timedelta(seconds=30)
    resumed = await store.claim_recipients(broadcast.id, "w1", later, 60, 2, rate_per_second=10)
    assert [r.not_before for r in resumed] == [later, later + timedelta(seconds=0.1)]


async def test_without_a_rate_a_claim_hands_out_no_slots(store: Store):
    broadcast = await broadcast_to(store, "1000", 2)
    assert [r.not_before for r in await store.claim_recipients(broadcast.id, "w1", T0, 60, 2)] == [None, None]
