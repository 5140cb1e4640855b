"""The scheduler: claims due conversations from the store and hands them to the processor."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta

from core.conversation.loop_lag import TurnWindow, watch_lag
from core.storage.base import ClaimStore
from core.clock import Clock
from core.storage.records import Claim

log = logging.getLogger("core.scheduler")

NEVER = datetime.max.replace(tzinfo=UTC)


def new_owner_id() -> str:
    """A name for this processor that is unique across processes and dynos."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """Wakes on a nudge, at the next due time, or every poll interval; runs up to `concurrency` turns at once.

    Slots are shared fairly only under contention: while every client with due conversations can have what it
    needs, it does (a client alone may use every slot); when they cannot all, each gets a fair share of the slots
    (slots / clients), and what a share leaves unused goes to whoever still has work. `client_cap`, when set, is a
    hard cap per client; `held_back` names clients whose turns would only queue now (their model endpoint is
    saturated): theirs stay in the store for a later pass or another process."""

    def __init__(self, store: ClaimStore, process: Callable[[Claim], Awaitable[None]], clock: Clock, *, lease_seconds: float,
                 poll_seconds: float, concurrency: int, client_cap: int | None = None,
                 held_back: Callable[[], Collection[str]] | None = None,
                 housekeeping: Callable[[], Awaitable[None]] | None = None, housekeeping_seconds: float = 30.0,
                 effects: Callable[[], None] | None = None, owner: str | None = None,
                 window: TurnWindow | None = None) -> None:
        self._store = store
        self._process = process
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._concurrency = concurrency
        self._window = window  # when given, turns start only while the event loop keeps up (loop_lag.py)
        self._watch: asyncio.Task[None] | None = None
        self._client_cap = client_cap
        self._held_back = held_back
        self._housekeeping = housekeeping
        self._housekeeping_seconds = housekeeping_seconds
        self._housekeeping_due = 0.0
        self._effects = effects
        self._effects_due = 0.0
        self.owner = owner or new_owner_id()
        self._wake = asyncio.Event()
        self._next_wake = NEVER  # while asleep: when it wakes anyway (a nudge due later changes nothing)
        self._awake = False
        self._nudged = NEVER  # while awake: the earliest due time a nudge named during the pass
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], str] = {}
        self._last_pass = 0.0  # the event loop's time when the loop last began a pass (GET /ready reads it)

    @property
    def running(self) -> int:
        """Turns in flight in this process."""
        return len(self._running)

    @property
    def alive(self) -> bool:
        """Started, not stopping, and its loop began a pass lately (a pass waits at most the poll interval)."""
        if self._loop_task is None or self._loop_task.done() or self._stopping:
            return False
        return asyncio.get_running_loop().time() - self._last_pass < max(3 * self._poll_seconds, 60.0)

    def nudge(self, due_at: datetime | None = None) -> None:
        """Something may be due sooner than planned (a new message): look again, unless already waking by then."""
        if due_at is None:
            self._wake.set()
        elif self._awake:
            # The pass may have read the next due time before this message was stored: decided when it ends.
            # Waking for every nudge instead kept a scheduler under a burst of acknowledgements passing
            # (a claim and a read each) dozens of times a second.
            self._nudged = min(self._nudged, due_at)
        elif due_at < self._next_wake:
            self._wake.set()

    @property
    def capacity(self) -> int:
        """Turns that may run at once now: the concurrency, or less while the event loop falls behind."""
        return self._window.limit if self._window is not None else self._concurrency

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        if self._window is not None:
            self._watch = asyncio.create_task(
                watch_lag(self._window, lambda: len(self._running), self._wake.set, lambda: self._stopping),
                name="scheduler-loop-lag")

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming, let running turns finish for `grace_seconds`, then cancel them (their leases are released)."""
        self._stopping = True
        self._wake.set()  # (a scheduler never started has no loop and nothing running: stopping is a no-op)
        if self._loop_task is not None:
            await self._loop_task
        if self._watch is not None:
            self._watch.cancel()
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _loop(self) -> None:
        self._awake = True
        while not self._stopping:
            self._last_pass = asyncio.get_running_loop().time()
            try:
                await self._tidy()
                await self._claim_and_start()
                delay = await self._delay_until_next()
            except Exception:
                log.exception("scheduler.store_failed", extra={"owner": self.owner})
                delay = self._poll_seconds
            # Under a burst of webhooks this spares a store round trip per message: the planned wake covers them.
            self._next_wake = self._clock.now() + timedelta(seconds=delay)
            self._awake = False
            if self._nudged < self._next_wake:
                self._wake.set()  # a message stored during the pass is due before the planned wake
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            self._awake, self._nudged = True, NEVER

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
        """One turn per waiting client below the share it would have if one more waited; then each up to its fair
        share among the clients now known; then, if slots are still free, anyone's. A few claims per pass."""
        if self.capacity - len(self._running) <= 0:
            return
        counts = Counter(self._running.values())
        blocked = set(self._held_back() if self._held_back is not None else ())
        # 1. Others first: without it, the client holding every slot would take each freed one (its work is due first).
        share = max(1, self.capacity // (len(counts) + 1))
        over = {client for client, count in counts.items() if count >= share}
        leased, _ = await self._claim(counts, blocked | over, per_client=1, share=share)
        if not leased and not over - blocked:
            return  # nothing due for anyone who could start
        # 2. The fair share among the clients known to want slots (round 1 found every waiting client not over it).
        #    A claim is capped per client, not counting running turns: one over the share is given back, and the
        #    round is repeated so that the slot goes to a client still below it.
        share = max(1, self.capacity // len(counts)) if counts else self.capacity
        room = min(share, self._client_cap or share)
        while below := [count for client, count in counts.items() if count < room and client not in blocked]:
            at_share = {client for client, count in counts.items() if count >= share}
            _, given_back = await self._claim(counts, blocked | at_share, per_client=share - min(below), share=share)
            if not given_back:
                break  # each client below the share got it, or has nothing more due, or the slots are full
        # 3. Slots the shares leave unused go to clients that have used theirs and may have more due.
        if any(count >= share for client, count in counts.items() if client not in blocked):
            await self._claim(counts, blocked, per_client=None, share=None)

    async def _claim(self, counts: Counter[str], exclude: set[str], *, per_client: int | None,
                     share: int | None) -> tuple[int, int]:
        """Claim up to the free slots and start each claim within `share` and the cap (the others are given back);
        returns how many the store leased and how many were given back."""
        free = self.capacity - len(self._running)
        if free <= 0:
            return 0, 0
        if self._client_cap is not None:
            exclude = exclude | {client for client, count in counts.items() if count >= self._client_cap}
        caps = [limit for limit in (per_client, self._client_cap) if limit is not None]
        claims = await self._store.claim_due(self.owner, self._clock.now(), self._lease_seconds, free, sorted(exclude),
                                             min([free, *caps]))
        limit = min(share or self.capacity, self._client_cap or self.capacity)
        given_back = 0
        for claim in claims:
            client = claim.conversation.client
            if counts[client] >= limit:
                await self._store.release(claim, retry_at=None)  # over this client's share; a later pass takes it
                given_back += 1
                continue
            counts[client] += 1
            task = asyncio.create_task(self._process(claim), name=f"conversation-{claim.conversation.id}")
            self._running[task] = client
            task.add_done_callback(self._finished)
        return len(claims), given_back

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a slot is free, and the conversation may have more waiting

    async def _delay_until_next(self) -> float:
        if len(self._running) >= self.capacity:
            return self._poll_seconds
        due = await self._store.next_due_at()
        if due is None:
            return self._poll_seconds
        wait = (due - self._clock.now()).total_seconds()
        # Already due yet not claimed: its client has its share running or its model endpoint is saturated; a
        # finishing turn, or the endpoint's limiter, wakes us.
        return min(wait, self._poll_seconds) if wait > 0 else self._poll_seconds
