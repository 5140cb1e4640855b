"""The scheduler: claims due conversations from the store and hands them to the processor."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from core.storage.base import Store
from core.clock import Clock
from core.storage.records import Claim

log = logging.getLogger("core.scheduler")


def new_owner_id() -> str:
    """A name for this processor that is unique across processes and dynos."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """Wakes on a nudge, at the next due time, or every poll interval; runs up to `concurrency` turns at once."""

    def __init__(self, store: Store, process: Callable[[Claim], Awaitable[None]], clock: Clock, *, lease_seconds: float,
                 poll_seconds: float, concurrency: int, client_concurrency: int,
                 housekeeping: Callable[[], Awaitable[None]] | None = None, housekeeping_seconds: float = 30.0,
                 effects: Callable[[], None] | None = None, owner: str | None = None) -> None:
        self._store = store
        self._process = process
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._concurrency = concurrency
        self._client_concurrency = client_concurrency
        self._housekeeping = housekeeping
        self._housekeeping_seconds = housekeeping_seconds
        self._housekeeping_due = 0.0
        self._effects = effects
        self._effects_due = 0.0
        self.owner = owner or new_owner_id()
        self._wake = asyncio.Event()
        self._next_wake = datetime.max.replace(tzinfo=UTC)  # while awake, every nudge counts
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], str] = {}

    def nudge(self, due_at: datetime | None = None) -> None:
        """Something may be due sooner than planned (a new message): look again, unless already waking by then."""
        if due_at is None or due_at < self._next_wake:
            self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming, let running turns finish for `grace_seconds`, then cancel them (their leases are released)."""
        self._stopping = True
        self._wake.set()  # (a scheduler never started has no loop and nothing running: stopping is a no-op)
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._tidy()
                await self._claim_and_start()
                delay = await self._delay_until_next()
            except Exception:
                log.exception("scheduler.store_failed", extra={"owner": self.owner})
                delay = self._poll_seconds
            # Under a burst of webhooks this spares a store round trip per message: the planned wake covers them.
            self._next_wake = self._clock.now() + timedelta(seconds=delay)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            self._next_wake = datetime.max.replace(tzinfo=UTC)

    async def _tidy(self) -> None:
        """Periodic work that is nobody's turn: effects due (retries, a dead process's), idle takeovers."""
        now = asyncio.get_running_loop().time()
        if self._effects is not None and now >= self._effects_due:
            self._effects_due = now + self._poll_seconds
            self._effects()
        if self._housekeeping is not None and now >= self._housekeeping_due:
            self._housekeeping_due = now + self._housekeeping_seconds
            await self._housekeeping()

    async def _claim_and_start(self) -> None:
        free = self._concurrency - len(self._running)
        if free <= 0:
            return
        # A client whose turns are slow (its model or tools hang) may not take every slot from the others.
        counts = Counter(self._running.values())
        busy = [client for client, count in counts.items() if count >= self._client_concurrency]
        claims = await self._store.claim_due(self.owner, self._clock.now(), self._lease_seconds, free, busy,
                                             self._client_concurrency)
        for claim in claims:
            client = claim.conversation.client
            if counts[client] >= self._client_concurrency:
                await self._store.release(claim, retry_at=None)  # over this client's share; another pass takes it
                continue
            counts[client] += 1
            task = asyncio.create_task(self._process(claim), name=f"conversation-{claim.conversation.id}")
            self._running[task] = claim.conversation.client
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a slot is free, and the conversation may have more waiting

    async def _delay_until_next(self) -> float:
        if len(self._running) >= self._concurrency:
            return self._poll_seconds
        due = await self._store.next_due_at()
        if due is None:
            return self._poll_seconds
        wait = (due - self._clock.now()).total_seconds()
        # Already due yet not claimed: its client has its share running; a finishing turn wakes us.
        return min(wait, self._poll_seconds) if wait > 0 else self._poll_seconds
