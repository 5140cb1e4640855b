"""Turns start while the event loop keeps up: many when they wait on the network, few when they use the CPU."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.conversation.loop_lag import TurnWindow
from core.storage.records import Claim
from tests.fakes.clock import ManualClock
from tests.unit.fakes import T0, MemoryStore, eventually
from tests.unit.test_scheduler import Turns, due, make_scheduler, running

pytestmark = pytest.mark.anyio


class TestWindow:
    def test_starts_small_and_doubles_while_the_loop_keeps_up_and_the_limit_binds(self) -> None:
        window = TurnWindow(100, floor=8)
        assert window.limit == 8
        assert window.observe(0.001, running=8) and window.limit == 16
        assert window.observe(0.001, running=16) and window.limit == 32
        assert not window.observe(0.001, running=20) and window.limit == 32  # not binding: no growth

    def test_never_beyond_the_concurrency(self) -> None:
        window = TurnWindow(20, floor=8)
        for _ in range(5):
            window.observe(0.0, running=window.limit)
        assert window.limit == 20

    def test_halves_when_the_loop_falls_behind_but_never_below_the_floor(self) -> None:
        window = TurnWindow(256, floor=8)
        for _ in range(4):
            window.observe(0.0, running=window.limit)
        assert window.limit == 128
        window.observe(0.2, running=128)
        assert window.limit == 64
        for _ in range(10):
            window.observe(0.2, running=window.limit)
        assert window.limit == 8

    def test_room_left_unused_shrinks_to_what_is_used(self) -> None:
        window = TurnWindow(256, floor=8)
        for _ in range(5):
            window.observe(0.0, running=window.limit)
        assert window.limit == 256
        window.observe(0.0, running=10)
        assert window.limit == 20  # a later wave of due turns starts near here, not at 256 at once


class TestScheduler:
    async def test_turns_waiting_on_the_network_reach_the_concurrency(self) -> None:
        store, clock = MemoryStore(), ManualClock(T0)
        due(store, 60)
        turns = Turns(store, gate_open=False)
        scheduler = make_scheduler(store, turns, clock, concurrency=48, client_cap=None, window=TurnWindow(48, floor=4))
        async with running(scheduler):
            await eventually(lambda: turns.most_running == 48, timeout=30)  # 4, 8, ... 48 as the loop keeps up
            turns.gate.set()
            await eventually(lambda: len(turns.finished) == 60, timeout=30)

    async def test_turns_that_hold_the_loop_are_started_a_few_at_a_time(self) -> None:
        store, clock = MemoryStore(), ManualClock(T0)
        due(store, 40)
        turns = Turns(store)
        in_flight, most = 0, 0

        async def busy(claim: Claim) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0)  # every turn started in the same pass gets this far before any spins
            spin_until = time.perf_counter() + 0.06  # CPU work that never yields: the loop falls behind by it
            while time.perf_counter() < spin_until:
                pass
            in_flight -= 1
            await turns(claim)

        scheduler = make_scheduler(store, busy, clock, concurrency=40, client_cap=None, window=TurnWindow(40, floor=2))
        async with running(scheduler):
            await eventually(lambda: len(turns.finished) == 40, timeout=60)
        # With the whole concurrency at once, one pass would start all 40 (2.4 s holding the loop).
        assert most <= 8
