"""Pacing of sends: per business number (throughput limit) and per recipient (pair rate limit)."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


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
        self._numbers: dict[str, _Bookings] = {}
        self._next_for_pair: dict[tuple[str, str], float] = {}

    def reserve(self, phone_number_id: str, recipient: str) -> float:
        """Book the next slot for this number and recipient; returns seconds to wait before sending."""
        now = self._monotonic()
        interval = self._number_interval
        pair = (phone_number_id, recipient)
        number = self._numbers.setdefault(phone_number_id, _Bookings())
        if number.frontier < now:  # the number's run of back-to-back sends is over: a new one starts now
            number.frontier = now
            del number.islands[:bisect.bisect_left(number.islands, now - interval)]
        slot = max(now, self._next_for_pair.get(pair, now))
        extends = slot <= number.frontier
        if extends:
            slot = number.frontier
        # Move past the sends booked ahead for other people (their pair interval put them there).
        islands = number.islands
        index = bisect.bisect_left(islands, slot - interval)
        while index < len(islands) and islands[index] - slot < interval:
            slot = islands[index] + interval
            index += 1
        if extends:
            del islands[:index]  # now behind the run
            number.frontier = slot + interval
        else:
            bisect.insort(islands, slot)
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
        self._numbers = {key: booked for key, booked in self._numbers.items()
                         if booked.frontier > now or (booked.islands and booked.islands[-1] > now)}


@dataclass
class _Bookings:
    """One number's booked sends: a run of back-to-back slots up to `frontier`, and single slots booked further
    ahead (`islands`, sorted) that leave the time before them free for other recipients."""

    frontier: float = float("-inf")
    islands: list[float] = field(default_factory=list)
