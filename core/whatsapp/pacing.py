"""Pacing of sends: per business number (throughput limit) and per recipient (pair rate limit)."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable


class Pacer:
    """Books a send slot and sleeps until it comes.

    A slot respects both limits: the number's (at most one send per 1/rate seconds) and the recipient's pair
    interval. A send held back by its recipient's interval takes a later slot of the number without holding back
    sends to other people, as Meta's per-pair limit (131056) allows. In-process only: several processes each pace
    themselves, so set the rate per process accordingly."""

    def __init__(self, *, per_number_per_second: float, pair_interval_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._number_interval = 1.0 / per_number_per_second
        self._pair_interval = pair_interval_seconds
        self._booked: dict[str, list[float]] = {}  # per number: the send times booked from now on, sorted
        self._next_for_pair: dict[tuple[str, str], float] = {}

    def reserve(self, phone_number_id: str, recipient: str) -> float:
        """Book the next slot for this number and recipient; returns seconds to wait before sending."""
        now = self._monotonic()
        pair = (phone_number_id, recipient)
        booked = self._booked.setdefault(phone_number_id, [])
        del booked[:bisect.bisect_left(booked, now - self._number_interval)]  # past slots no longer constrain
        slot = max(now, self._next_for_pair.get(pair, now))
        # The earliest time from `slot` on that is a whole interval away from every booked send of the number.
        for other in booked[bisect.bisect_left(booked, slot - self._number_interval):]:
            if other - slot >= self._number_interval:
                break
            slot = max(slot, other + self._number_interval)
        bisect.insort(booked, slot)
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
        self._booked = {number: slots for number, slots in self._booked.items() if slots and slots[-1] > now}
