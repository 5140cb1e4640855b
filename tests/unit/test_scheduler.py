"""Scheduler: claims due conversations once each, keeps to its concurrency and each client's share, wakes on
nudges and due times, survives store failures, stops cleanly, and runs housekeeping at its own cadence."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.conversation.scheduler import Scheduler
from core.storage.base import StoreUnavailable
from core.storage.records import Claim
from tests.fakes.clock import ManualClock
from tests.unit.fakes import T0, MemoryStore, eventually, settle

pytestmark = pytest.mark.anyio


class Turns:
    """The processor as the scheduler sees it: each turn runs until `gate` opens, then completes the conversation."""

    def __init__(self, store: MemoryStore, *, gate_open: bool = True) -> None:
        self.store = store
        self.gate = asyncio.Event()
        if gate_open:
            self.gate.set()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.running: Counter[str] = Counter()
        self.most_running = 0
        self.most_by_client: Counter[str] = Counter()

    async def __call__(self, claim: Claim) -> None:
        conversation_id, client = claim.conversation.id, claim.conversation.client
        self.started.append(conversation_id)
        self.running[client] += 1
        self.most_running = max(self.most_running, sum(self.running.values()))
        self.most_by_client[client] = max(self.most_by_client[client], self.running[client])
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            # As the real processor does: a cancelled turn gives its lease back.
            self.cancelled.append(conversation_id)
            await asyncio.shield(self.store.release(claim, retry_at=None))
            raise
        finally:
            self.running[client] -= 1
        self.store.complete(conversation_id)
        self.finished.append(conversation_id)


def make_scheduler(store: MemoryStore, turns: Turns, clock: ManualClock, **options: Any) -> Scheduler:
    settings: dict[str, Any] = {"lease_seconds": 60, "poll_seconds": 30, "concurrency": 4, "client_cap": None,
                                "owner": "unit", **options}
    return Scheduler(store, turns, clock, **settings)


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    scheduler.start()
    try:
        yield scheduler
    finally:
        await asyncio.wait_for(scheduler.stop(grace_seconds=0), 1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def due(store: MemoryStore, count: int, *, client: str = "demo", at: datetime = T0) -> list[int]:
    return [store.add_conversation(client=client, due_at=at).id for _ in range(count)]


async def asleep(store: MemoryStore, passes: int = 1) -> None:
    """Wait until the scheduler finished `passes` passes (it asks for the next due time last) and sleeps."""
    await eventually(lambda: store.next_due_calls >= passes)
    await settle()


class TestClaiming:
    async def test_each_due_conversation_is_answered_once(self, store: MemoryStore, clock: ManualClock) -> None:
        ids = due(store, 3)
        later = store.add_conversation(due_at=T0 + timedelta(minutes=1)).id
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock)):
            await eventually(lambda: len(turns.finished) == 3)
            await settle()
        assert sorted(turns.started) == ids
        assert later not in turns.started  # not due yet

    async def test_never_more_turns_at_once_than_the_concurrency(self, store: MemoryStore, clock: ManualClock) -> None:
        due(store, 5)
        turns = Turns(store, gate_open=False)
        async with running(make_scheduler(store, turns, clock, concurrency=2, client_cap=5)) as scheduler:
            await eventually(lambda: len(turns.started) == 2)
            scheduler.nudge()  # a pass while every slot is busy
            await settle()
            assert len(turns.started) == 2  # the other three wait for a free slot
            turns.gate.set()
            await eventually(lambda: len(turns.finished) == 5)
        assert turns.most_running == 2

    async def test_a_slow_client_cannot_take_every_slot(self, store: MemoryStore, clock: ManualClock) -> None:
        slow = due(store, 4, client="slow", at=T0 - timedelta(seconds=10))  # due first
        [other] = due(store, 1, client="other")
        turns = Turns(store, gate_open=False)
        async with running(make_scheduler(store, turns, clock, concurrency=3, client_cap=2)):
            await eventually(lambda: other in turns.started)
            await settle()
            assert turns.running == {"slow": 2, "other": 1}
            assert set(turns.started) == {*slow[:2], other}
            turns.gate.set()
            await eventually(lambda: len(turns.finished) == 5)
        assert turns.most_by_client["slow"] == 2

    async def test_a_client_at_its_cap_leaves_the_rest_due_in_the_store(self, store: MemoryStore,
                                                                          clock: ManualClock) -> None:
        [first] = due(store, 1)
        turns = Turns(store, gate_open=False)
        async with running(make_scheduler(store, turns, clock, concurrency=4, client_cap=2)) as scheduler:
            await eventually(lambda: turns.started == [first])
            second, third = due(store, 2)
            scheduler.nudge()
            await eventually(lambda: len(turns.started) == 2)
            await settle()
            assert turns.running["demo"] == 2  # two slots stay free: the operator's cap, not the slots, decides
            [waiting] = {second, third} - set(turns.started)
            assert not store.is_leased(waiting) and store.conversations[waiting].due_at == T0  # still due
            turns.gate.set()
            await eventually(lambda: sorted(turns.finished) == [first, second, third])
        assert turns.most_by_client["demo"] == 2

    async def test_a_claim_over_the_fair_share_is_given_back_and_the_slot_goes_to_a_client_below_it(
            self, store: MemoryStore, clock: ManualClock) -> None:
        busy = due(store, 3, client="busy", at=T0 - timedelta(seconds=10))
        [quiet] = due(store, 1, client="quiet")
        turns = Turns(store, gate_open=False)
        async with running(make_scheduler(store, turns, clock, concurrency=8)) as scheduler:
            await eventually(lambda: len(turns.started) == 4)
            # Both now have more due, "busy" first. The fair share is 4 each; the store caps a claim per client, not
            # counting running turns, so it leases "busy" more than its share: that one is given back, still due.
            due(store, 5, client="busy", at=T0 - timedelta(seconds=30))
            due(store, 5, client="quiet", at=T0 - timedelta(seconds=20))
            scheduler.nudge()
            await eventually(lambda: len(turns.started) == 8)
            await settle()
            assert turns.running == {"busy": 4, "quiet": 4}
            assert store.releases and all(retry_at is None for _, retry_at in store.releases)
            turns.gate.set()
            await eventually(lambda: len(turns.finished) == 14)
        assert sorted(turns.started) == sorted(store.conversations)  # each answered once
        assert busy[0] in turns.started and quiet in turns.started

    async def test_clients_held_back_stay_due_in_the_store_until_their_endpoint_has_room(
            self, store: MemoryStore, clock: ManualClock) -> None:
        [held] = due(store, 1, client="held")
        [free] = due(store, 1, client="free")
        saturated = {"held"}
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock, held_back=lambda: saturated)) as scheduler:
            await eventually(lambda: turns.finished == [free])
            await asleep(store)
            assert held not in turns.started and not store.is_leased(held)  # left for another process or pass
            saturated.clear()
            scheduler.nudge()  # what the endpoint's limiter does when it has room again
            await eventually(lambda: turns.finished == [free, held])

    async def test_a_store_failure_is_retried_after_the_poll_interval(self, store: MemoryStore,
                                                                      clock: ManualClock) -> None:
        store.claim_failures.append(StoreUnavailable("database is locked"))
        [only] = due(store, 1)
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock, poll_seconds=0.01)):
            await eventually(lambda: turns.finished == [only])
        assert store.claim_calls >= 2


class TestWaking:
    async def test_a_nudge_wakes_a_sleeping_scheduler(self, store: MemoryStore, clock: ManualClock) -> None:
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock)) as scheduler:
            await asleep(store)
            [arrived] = due(store, 1)
            scheduler.nudge(T0)
            await eventually(lambda: turns.finished == [arrived], timeout=0.5)  # far sooner than the 30 s poll

    async def test_a_nudge_due_after_the_planned_wake_costs_no_store_round_trip(self, store: MemoryStore,
                                                                                clock: ManualClock) -> None:
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock, poll_seconds=30)) as scheduler:
            await asleep(store)
            scheduler.nudge(T0 + timedelta(seconds=40))  # the poll wakes it at T0 + 30 s anyway
            await settle()
            assert store.claim_calls == 1
            scheduler.nudge(T0 + timedelta(seconds=20))
            await eventually(lambda: store.claim_calls == 2)

    async def test_a_nudge_without_a_time_always_wakes(self, store: MemoryStore, clock: ManualClock) -> None:
        async with running(make_scheduler(store, Turns(store), clock)) as scheduler:
            await asleep(store)
            scheduler.nudge()
            await eventually(lambda: store.claim_calls == 2)

    async def test_wakes_at_the_next_due_time_without_a_nudge(self, store: MemoryStore, clock: ManualClock) -> None:
        [soon] = due(store, 1, at=T0 + timedelta(seconds=0.02))
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock, poll_seconds=30)):
            await asleep(store)
            assert turns.started == []
            clock.advance(0.02)
            await eventually(lambda: turns.finished == [soon], timeout=0.5)

    async def test_a_nudge_during_a_pass_is_not_lost(self, store: MemoryStore, clock: ManualClock) -> None:
        reading = asyncio.Event()
        go_on = asyncio.Event()
        stale_reads = [None]

        async def next_due_read_before_the_webhook_committed() -> datetime | None:
            if stale_reads:
                reading.set()
                await go_on.wait()
                return stale_reads.pop()
            return await MemoryStore.next_due_at(store)

        store.next_due_at = next_due_read_before_the_webhook_committed
        turns = Turns(store)
        async with running(make_scheduler(store, turns, clock, poll_seconds=30)) as scheduler:
            await asyncio.wait_for(reading.wait(), 1)
            [arrived] = due(store, 1)  # the webhook stores a message and nudges while the pass is still running
            scheduler.nudge(T0)
            go_on.set()
            await eventually(lambda: turns.finished == [arrived], timeout=0.3)


    async def test_nudges_during_a_pass_due_after_its_planned_wake_cost_no_second_pass(self, store: MemoryStore,
                                                                                    clock: ManualClock) -> None:
        # Under a burst of acknowledgements every delivery nudges; a pass in progress must not turn each into
        # another pass (a claim and a read), only those due before it would wake anyway.
        reading = asyncio.Event()
        go_on = asyncio.Event()

        async def slow_next_due() -> datetime | None:
            reading.set()
            await go_on.wait()
            return await MemoryStore.next_due_at(store)

        store.next_due_at = slow_next_due
        async with running(make_scheduler(store, Turns(store), clock, poll_seconds=30)) as scheduler:
            await asyncio.wait_for(reading.wait(), 1)
            for seconds in (31, 40, 60):  # due after the pass's planned wake (the poll interval, 30 s)
                scheduler.nudge(T0 + timedelta(seconds=seconds))
            go_on.set()
            await asleep(store)
            await settle()
            assert store.next_due_calls == 1


class TestStop:
    async def test_a_running_turn_may_finish_within_the_grace(self, store: MemoryStore, clock: ManualClock) -> None:
        [only] = due(store, 1)
        turns = Turns(store, gate_open=False)
        scheduler = make_scheduler(store, turns, clock)
        scheduler.start()
        await eventually(lambda: turns.started == [only])
        stopping = asyncio.create_task(scheduler.stop(grace_seconds=5))
        await settle()
        assert not stopping.done()  # waiting for the turn
        turns.gate.set()
        await asyncio.wait_for(stopping, 1)
        assert turns.finished == [only] and turns.cancelled == []

    async def test_a_turn_still_running_after_the_grace_is_cancelled_and_its_lease_released(
            self, store: MemoryStore, clock: ManualClock) -> None:
        [only] = due(store, 1)
        turns = Turns(store, gate_open=False)
        scheduler = make_scheduler(store, turns, clock)
        scheduler.start()
        await eventually(lambda: turns.started == [only])
        await asyncio.wait_for(scheduler.stop(grace_seconds=0.01), 1)
        assert turns.cancelled == [only] and turns.finished == []
        assert not store.is_leased(only)  # stop() returned only after the cancelled turn cleaned up

    async def test_nothing_is_claimed_after_stop(self, store: MemoryStore, clock: ManualClock) -> None:
        turns = Turns(store)
        scheduler = make_scheduler(store, turns, clock)
        scheduler.start()
        await asleep(store)
        await asyncio.wait_for(scheduler.stop(grace_seconds=1), 1)
        calls = store.claim_calls
        due(store, 1)
        scheduler.nudge()
        await settle()
        assert store.claim_calls == calls and turns.started == []

    async def test_stopping_a_scheduler_never_started_is_a_no_op(self, store: MemoryStore, clock: ManualClock) -> None:
        await asyncio.wait_for(make_scheduler(store, Turns(store), clock).stop(grace_seconds=1), 1)
        assert store.claim_calls == 0


class TestHousekeeping:
    async def test_runs_at_start_and_not_on_every_wake(self, store: MemoryStore, clock: ManualClock) -> None:
        calls: list[float] = []

        async def housekeeping() -> None:
            calls.append(clock.now().timestamp())

        scheduler = make_scheduler(store, Turns(store), clock, housekeeping=housekeeping, housekeeping_seconds=30)
        async with running(scheduler):
            await asleep(store)
            for passes in (2, 3, 4):
                scheduler.nudge()
                await asleep(store, passes)
        assert len(calls) == 1

    async def test_runs_again_once_its_interval_has_passed(self, store: MemoryStore, clock: ManualClock) -> None:
        calls: list[int] = []

        async def housekeeping() -> None:
            calls.append(store.claim_calls)

        scheduler = make_scheduler(store, Turns(store), clock, poll_seconds=0.005, housekeeping=housekeeping,
                                   housekeeping_seconds=0.03)
        async with running(scheduler):
            await eventually(lambda: len(calls) >= 3)
        assert calls[-1] > len(calls)  # polled more often than it kept house

    async def test_a_failing_housekeeping_does_not_stop_answering(self, store: MemoryStore,
                                                                  clock: ManualClock) -> None:
        async def housekeeping() -> None:
            raise StoreUnavailable("down")

        [only] = due(store, 1)
        turns = Turns(store)
        scheduler = make_scheduler(store, turns, clock, poll_seconds=0.01, housekeeping=housekeeping,
                                   housekeeping_seconds=30)
        async with running(scheduler):
            await eventually(lambda: turns.finished == [only])
