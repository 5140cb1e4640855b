"""Pacing of sends: per business number (throughput limit) and per recipient (pair rate limit)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    """Reserves a send slot and sleeps until it comes; callers queue in the order they ask.

    In-process only: several processes each pace themselves, so set the rate per process accordingly."""

    def __init__(self, *, per_number_per_second: float, pair_interval_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._number_interval = 1.0 / per_number_per_second
        self._pair_interval = pair_interval_seconds
        self._next_for_number: dict[str, float] = {}
        self._next_for_pair: dict[tuple[str, str], float] = {}

    def reserve(self, phone_number_id: str, recipient: str) -> float:
        """Book the next slot for this number and recipient; returns seconds to wait before sending."""
        now = self._monotonic()
        pair = (phone_number_id, recipient)
        slot = max(now, self._next_for_number.get(phone_number_id, now), self._next_for_pair.get(pair, now))
        self._next_for_number[phone_number_id] = slot + self._number_interval
        self._next_for_pair[pair] = slot + self._pair_interval
        if len(self._next_for_pair) > 10_000:
            self._forget_before(now)
        return slot - now

    async def wait(self, phone_number_id: str, recipient: str) -> None:
        delay = self.reserve(phone_number_id, recipient)
        if delay > 0:
            await self._sleep(delay)

    def _forget_before(self, now: float) -> None:
        self._next_for_pair = {key: at for key, at in self._next_for_pair.items() if at > now}
        self._next_for_number = {key: at for key, at in self._next_for_number.items() if at > now}
