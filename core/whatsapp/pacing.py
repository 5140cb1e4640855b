"""Pacing of sends: per business number (a sliding-window throughput limit) and per recipient (pair rate limit)."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Awaitable, Callable

_SWEEP_AT_LEAST = 10_000  # pairs kept before the first sweep of the ones whose interval has passed


class Pacer:
    """Books each send the earliest time both limits allow and sleeps until it comes.

    The number's limit is a sliding window: at most `limit` sends in any `window` seconds, so replies that become
    ready together go out together. The recipient's pair interval (131056) holds back only that person's sends.
    In-process only: several processes each pace themselves, so set the rate per process accordingly."""

    def __init__(self, *, per_number_per_second: float, pair_interval_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        # One second, rounded down to whole sends: Meta's limits are whole numbers a second, and a fractional rate
        # comes from sharing one among processes, whose shares must still add up to no more than it. (A window that
        # kept 80/3 exact, 80 sends in 3 s, would let each of 3 processes send 80 in one second.) Below one send a
        # second, the window grows to hold exactly one.
        self.window = max(1.0, 1.0 / per_number_per_second)
        self.limit = max(1, math.floor(per_number_per_second * self.window + 1e-9))
        self._pair_interval = pair_interval_seconds
        self._numbers: dict[str, _Window] = {}
        self._next_for_pair: dict[tuple[str, str], float] = {}
        self._sweep_at = _SWEEP_AT_LEAST

    def reserve(self, phone_number_id: str, recipient: str) -> float:
        """Book a send for this number and recipient; returns seconds to wait before sending."""
        now = self._monotonic()
        pair = (phone_number_id, recipient)
        number = self._numbers.get(phone_number_id)
        if number is None:
            number = self._numbers[phone_number_id] = _Window(self.limit, self.window)
        slot = number.book(now, max(now, self._next_for_pair.get(pair, now)))
        self._next_for_pair[pair] = slot + self._pair_interval
        if len(self._next_for_pair) > self._sweep_at:
            self._forget_before(now)
        return slot - now

    async def wait(self, phone_number_id: str, recipient: str) -> None:
        delay = self.reserve(phone_number_id, recipient)
        if delay > 0:
            await self._sleep(delay)

    def held(self) -> int:
        """Bookings kept in memory (pairs and send times): the ones that still constrain a send."""
        return len(self._next_for_pair) + sum(number.held() for number in self._numbers.values())

    def _forget_before(self, now: float) -> None:
        self._next_for_pair = {key: at for key, at in self._next_for_pair.items() if at > now}
        self._numbers = {key: number for key, number in self._numbers.items() if number.constrains_after(now)}
        # The next sweep waits until the kept pairs have doubled, so sweeping stays amortised O(1) a send.
        self._sweep_at = max(_SWEEP_AT_LEAST, 2 * len(self._next_for_pair))


class _Window:
    """One number's booked send times (sorted) and its frontier: every time from now up to it is already full.

    Times more than a window before the frontier are forgotten: no send is booked before the frontier again."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._times: list[float] = []
        self._first = 0  # _times[:_first] are forgotten; deleted in bulk, so forgetting is amortised O(1)
        self._frontier = -math.inf

    def book(self, now: float, earliest: float) -> float:
        """Book the earliest time from `earliest` on that keeps every window within the limit; returns it."""
        self._frontier = max(self._frontier, now)
        # A send free to go now starts its search at the frontier and moves it: all between is full.
        # A send held by its pair interval beyond the frontier leaves the time before it to others.
        at_frontier = earliest <= self._frontier
        slot = self._first_free(self._frontier if at_frontier else earliest)
        bisect.insort(self._times, slot, lo=self._first)
        if at_frontier:
            self._frontier = slot
            self._forget_ending_by(slot)
        return slot

    def _first_free(self, at: float) -> float:
        # A send at `at` breaks the limit only if some `limit` consecutive sends, low .. high, fit in one window
        # with it: `at` before low and high < at + window, or `at` from low on and both at and high < low + window.
        # Ends grow with k: one pass from the first group whose low + window lies after `at`, moving `at` to the
        # end of each group that forbids it, and stopping at the first group that starts a window after `at`.
        times, window, span = self._times, self._window, self._limit - 1
        k = self._first_ending_after(at)
        last = len(times) - 1 - span
        while k <= last:
            low, high = times[k], times[k + span]
            if high >= at + window:
                break  # neither this group nor any later one reaches back to `at`
            if at < low + window and high < low + window:
                at = low + window
            k += 1
        return at

    def _first_ending_after(self, at: float) -> int:
        # Compared as t + window, the very sum an interval ends at, so rounding never disagrees with the search.
        window = self._window
        return bisect.bisect_right(self._times, at, lo=self._first, key=lambda t: t + window)

    def _forget_ending_by(self, frontier: float) -> None:
        self._first = self._first_ending_after(frontier)
        if self._first * 2 > len(self._times):
            del self._times[:self._first]
            self._first = 0

    def held(self) -> int:
        return len(self._times) - self._first

    def constrains_after(self, now: float) -> bool:
        """Whether a send from `now` on could still be held back by these bookings."""
        return self.held() > 0 and self._times[-1] + self._window > now
