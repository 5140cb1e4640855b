"""The model endpoint's adaptive limiter: a 429 halves the calls in flight once per episode and pauses new ones for
the provider's reset; successes grow the limit back; waiting calls go first come, first served; and what a 429's
headers say about the wait."""

from __future__ import annotations

import asyncio
import pytest

from core.llm.concurrency import AdaptiveLimiter
from core.llm.ratelimit import ModelEndpoints, parse_duration, retry_after_seconds
from tests.fakes.clock import ManualClock
from tests.unit.fakes import T0, settle

pytestmark = pytest.mark.anyio


class Sleeps:
    """The limiter's sleep: records each pause, and moves the manual clock only when the test says time passed."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.asked: list[float] = []
        self._passed = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._passed.wait()
        self._passed.clear()

    def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._passed.set()


async def started(limiter: AdaptiveLimiter, count: int) -> list[asyncio.Task[int]]:
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(count)]
    await settle()
    return tasks


class TestAIMD:
    async def test_at_most_the_allowed_calls_run_and_the_rest_wait_in_order(self) -> None:
        limiter = AdaptiveLimiter(2, ManualClock(T0))
        first, second, third, fourth = await started(limiter, 4)
        assert first.done() and second.done() and not third.done()
        assert (limiter.in_flight, limiter.waiting, limiter.saturated) == (2, 2, True)
        limiter.failed(first.result())
        await settle()
        assert third.done() and not fourth.done()  # first come, first served

    async def test_a_429_halves_the_limit_once_for_the_calls_already_in_flight(self) -> None:
        limiter = AdaptiveLimiter(16, ManualClock(T0))
        permits = [task.result() for task in await started(limiter, 16)]
        for permit in permits[:10]:  # ten calls of the same burst come back 429
            limiter.rate_limited(permit, retry_after=0)
        assert limiter.allowed == 8  # halved once, not down to 1
        limiter.rate_limited(permits[10], retry_after=0)
        assert limiter.allowed == 8  # a call granted before the halving is still the same episode
        assert limiter.in_flight == 5
        more = await started(limiter, 4)
        assert [task.done() for task in more] == [True, True, True, False]  # 8 allowed

    async def test_a_429_on_a_call_granted_after_the_halving_halves_again(self) -> None:
        limiter = AdaptiveLimiter(8, ManualClock(T0))
        [first] = await started(limiter, 1)
        limiter.rate_limited(first.result(), retry_after=0)
        assert limiter.allowed == 4
        [second] = await started(limiter, 1)
        limiter.rate_limited(second.result(), retry_after=0)
        assert limiter.allowed == 2
        [third] = await started(limiter, 1)
        limiter.rate_limited(third.result(), retry_after=0)
        [fourth] = await started(limiter, 1)
        limiter.rate_limited(fourth.result(), retry_after=0)
        assert limiter.allowed == 1  # never below one call

    async def test_successes_grow_the_limit_back_to_the_ceiling_and_no_further(self) -> None:
        limiter = AdaptiveLimiter(8, ManualClock(T0))
        [first] = await started(limiter, 1)
        limiter.rate_limited(first.result(), retry_after=0)
        assert limiter.allowed == 4
        successes = 0
        while limiter.allowed < 8:
            [task] = await started(limiter, 1)
            limiter.succeeded(task.result())
            successes += 1
        assert 22 <= successes <= 26  # about +1 per window of `limit` successes: (8² - 4²) / 2
        for _ in range(50):
            [task] = await started(limiter, 1)
            limiter.succeeded(task.result())
        assert limiter.allowed == 8

    async def test_a_cancelled_waiter_gives_its_place_and_a_granted_slot_back(self) -> None:
        limiter = AdaptiveLimiter(1, ManualClock(T0))
        holder, cancelled, after = await started(limiter, 3)
        cancelled.cancel()
        await settle()
        limiter.succeeded(holder.result())
        await settle()
        assert after.done() and limiter.in_flight == 1 and limiter.waiting == 0


class TestPause:
    async def test_retry_after_pauses_new_calls_until_the_providers_reset(self) -> None:
        clock = ManualClock(T0)
        sleeps = Sleeps(clock)
        room: list[bool] = []
        limiter = AdaptiveLimiter(4, clock, sleep=sleeps, on_room=lambda: room.append(True))
        [first] = await started(limiter, 1)
        limiter.rate_limited(first.result(), retry_after=7)
        [waiting] = await started(limiter, 1)
        assert not waiting.done() and limiter.paused and limiter.saturated
        assert sleeps.asked == [7]
        sleeps.pass_time(3)  # woken early (by nothing): the clock says 4 s remain
        await settle()
        assert not waiting.done() and sleeps.asked == [7, 4]
        sleeps.pass_time(4)
        await settle()
        assert waiting.done() and not limiter.saturated
        assert room == [True]  # the scheduler is told once that the endpoint has room again

    async def test_without_a_reset_header_the_pause_doubles_with_each_429_in_a_row(self) -> None:
        clock = ManualClock(T0)
        sleeps = Sleeps(clock)
        limiter = AdaptiveLimiter(4, clock, base_pause_seconds=0.5, sleep=sleeps)
        for _ in range(3):
            [task] = await started(limiter, 1)
            limiter.rate_limited(task.result(), retry_after=None)
            await settle()
            sleeps.pass_time(60)  # whatever the pause was, it is over
            await settle()
        assert sleeps.asked == [0.5, 1, 2]


class TestWhatA429Says:
    @pytest.mark.parametrize(("headers", "seconds"), [
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "Sun, 22 Nov 2026 12:00:10 GMT"}, 10.0),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 1.0),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s", "x-ratelimit-remaining-tokens": "0"},
         360.0),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ])
    def test_the_wait_the_provider_asks_for(self, headers: dict[str, str], seconds: float | None) -> None:
        assert retry_after_seconds(headers, T0) == seconds

    def test_durations(self) -> None:
        assert parse_duration("1h2m3.5s") == 3723.5
        assert parse_duration("17ms") == pytest.approx(0.017)
        assert parse_duration("2x") is None


class TestEndpoints:
    def test_one_limiter_per_base_url_and_key(self) -> None:
        endpoints = ModelEndpoints(32, ManualClock(T0))
        openai = endpoints.limiter(None, "sk-a")
        assert endpoints.limiter("https://api.openai.com/v1/", "sk-a") is openai
        assert endpoints.limiter(None, "sk-b") is not openai
        assert endpoints.limiter("http://127.0.0.1:8001/v1", "sk-a") is not openai
        assert "sk-a" not in repr(endpoints._limiters)  # noqa: SLF001 - keys are held as digests
