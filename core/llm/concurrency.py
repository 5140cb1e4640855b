"""An adaptive limit on the calls in flight to one model endpoint: halved on a rate limit, grown back on successes."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from core.clock import Clock

log = logging.getLogger("core.llm.concurrency")

# The longest pause a provider's reset may impose (as the openai client's own retries do).
MAX_PAUSE_SECONDS = 120.0


class AdaptiveLimiter:
    """AIMD on concurrency: at most `allowed` calls in flight, FIFO for the rest; a 429 halves the limit (once per
    episode) and pauses new calls until the provider's reset; each success adds 1/limit, so +1 per window of calls."""

    def __init__(self, ceiling: int, clock: Clock, *, name: str = "model",
                 base_pause_seconds: float = 1.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_room: Callable[[], None] | None = None) -> None:
        if ceiling < 1:
            raise ValueError("a limiter allows at least one call")
        self.name = name
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self._clock = clock
        self._sleep = sleep
        self._base_pause = base_pause_seconds  # without a reset header: doubled for each 429 in a row
        self._on_room = on_room
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._epoch = 0  # bumped by each decrease: a 429 from a call granted before it belongs to the same episode
        self._paused_until: datetime | None = None
        self._rate_limits_in_a_row = 0
        self._resumer: asyncio.Task[None] | None = None
        self._was_saturated = False

    @property
    def allowed(self) -> int:
        """Calls that may be in flight now."""
        return max(1, int(self.limit))

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def paused(self) -> bool:
        return self._paused_until is not None and self._clock.now() < self._paused_until

    @property
    def saturated(self) -> bool:
        """More work for this endpoint would only queue in memory: calls wait for a slot, or the provider said wait."""
        return bool(self._waiters) or self.paused

    def set_listener(self, on_room: Callable[[], None]) -> None:
        """Called when the limiter stops being saturated (the scheduler may start turns again)."""
        self._on_room = on_room

    async def acquire(self) -> int:
        """Wait for a slot; returns the permit to hand back to `succeeded`, `rate_limited` or `failed`."""
        if not self._waiters and self._may_start():
            self.in_flight += 1
            return self._epoch
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._was_saturated = True
        self._resume_later()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted as it was cancelled: give the slot to the next one
            else:
                self._waiters.remove(waiter)
            self._grant()
            raise

    def succeeded(self, permit: int) -> None:
        """A call ended well: additive increase."""
        self.in_flight -= 1
        self._rate_limits_in_a_row = 0
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._grant()

    def failed(self, permit: int) -> None:
        """A call ended in an error that says nothing about the rate limit (timeout, 5xx, a bad request)."""
        self.in_flight -= 1
        self._grant()

    def rate_limited(self, permit: int, retry_after: float | None) -> None:
        """The provider answered 429: pause new calls until its reset, and halve the limit once per episode."""
        self.in_flight -= 1
        if retry_after is None:
            retry_after = self._base_pause * 2 ** min(self._rate_limits_in_a_row, 7)
        self._rate_limits_in_a_row += 1
        until = self._clock.now() + timedelta(seconds=min(max(retry_after, 0.0), MAX_PAUSE_SECONDS))
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
        if permit == self._epoch:  # calls already in flight when we halved are the same overload, not a new one
            self._epoch += 1
            self.limit = max(1.0, self.limit / 2)
            log.warning("llm.rate_limited", extra={"endpoint": self.name, "limit": self.allowed,
                                                   "in_flight": self.in_flight, "pause_seconds": round(retry_after, 3)})
        self._was_saturated = True
        self._resume_later()
        self._grant()

    def _may_start(self) -> bool:
        return self.in_flight < self.allowed and not self.paused

    def _grant(self) -> None:
        while self._waiters and self._may_start():
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.in_flight += 1
            waiter.set_result(self._epoch)
        if self._was_saturated and not self.saturated:
            self._was_saturated = False
            if self._on_room is not None:
                self._on_room()

    def _resume_later(self) -> None:
        """While paused, one task wakes the queue at the pause's end (nobody else would)."""
        if self._resumer is None or self._resumer.done():
            self._resumer = asyncio.get_running_loop().create_task(self._resume(), name=f"limiter-{self.name}")

    async def _resume(self) -> None:
        while self._paused_until is not None:
            remaining = (self._paused_until - self._clock.now()).total_seconds()
            if remaining <= 0:
                self._paused_until = None
                break
            await self._sleep(remaining)
        self._grant()
