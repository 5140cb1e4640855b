"""How many turns a process may run at once, from how late its event loop runs what is due.

Turns mostly wait on the network (the model, the Graph API), so many run at once. Some use the CPU instead (the
offline responder, a long batch read and stored, a tool's own work); hundreds of those coming due together make the
event loop fall behind, and the webhook's acknowledgements wait behind them (Meta wants a 200 within 250 ms). So the
number of turns that may start follows the loop's lag, as a TCP window follows loss: it doubles while the loop keeps
up and the limit is what holds turns back, halves when the loop falls behind, and shrinks to what is used when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Lag the loop may show before fewer turns start: well inside Meta's 250 ms, far above an iteration's few ms.
TARGET_LAG_SECONDS = 0.05
PROBE_SECONDS = 0.05  # how often the lag is measured (20 timer wake-ups a second: nothing next to a turn)


class TurnWindow:
    """The number of turns that may run at once; `observe` moves it with each measured lag."""

    def __init__(self, ceiling: int, *, floor: int = 16, target: float = TARGET_LAG_SECONDS) -> None:
        self.ceiling = ceiling  # SCHEDULER_CONCURRENCY: never more, whatever the loop does
        self.floor = min(floor, ceiling)  # never fewer: a few turns always make progress
        self.target = target
        self.limit = self.floor

    def observe(self, lag: float, running: int) -> bool:
        """Take one lag measurement with `running` turns in flight; True when the window grew (claim more now)."""
        if lag > self.target:
            self.limit = max(self.floor, min(self.limit, running) // 2)
            return False
        if running >= self.limit and lag < self.target / 2 and self.limit < self.ceiling:
            self.limit = min(self.ceiling, self.limit * 2)
            return True
        if running < self.limit // 2:  # unused room is not kept: a later wave of due turns starts from here
            self.limit = max(self.floor, running * 2)
        return False


async def watch_lag(window: TurnWindow, running: Callable[[], int], grew: Callable[[], None],
                    stopped: Callable[[], bool], every: float = PROBE_SECONDS) -> None:
    """Measure the loop's lag every `every` seconds (how late a timer fires) into `window` until `stopped()`."""
    loop = asyncio.get_running_loop()
    while not stopped():
        started = loop.time()
        await asyncio.sleep(every)
        if window.observe(loop.time() - started - every, running()):
            grew()
