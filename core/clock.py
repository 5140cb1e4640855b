"""The time the service sees: one injectable clock, so that tests and replays can set the date."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock: what every deployment uses."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class StartedClock:
    """A clock that starts at a chosen instant and then runs at the machine's pace (monotonic, never jumps).

    Used to run the service as if it were another day, e.g. to replay recorded webhooks weeks after they were made."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the start of a clock must be an aware datetime")
        self._start = start.astimezone(UTC)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)
