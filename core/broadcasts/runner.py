"""The broadcast worker: claims recipients of due broadcasts in batches under a lease, sends each one's template
at the send time its batch booked (the number's throughput shared by all processes through the store), and
records every send; pauses a broadcast on Meta's rate and spam errors. A broadcast's next batch is claimed, stored
and booked while its current one is being sent, so the number does not idle while a batch is prepared.

Runs in every process that runs the scheduler. A recipient's outbound message is stored before its send, and its
send carries biz_opaque_callback_data naming it: Meta has no idempotency key for /messages, so a process that dies
after Meta accepted a send and before recording it leaves that recipient in doubt; its status webhook (which
returns the callback data) records it, and only a recipient still without a wamid when its lease ends is sent again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.broadcasts.parameters import for_person
from core.clients import Client, ClientRegistry
from core.clock import Clock
from core.conversation.processor import Senders
from core.storage.base import BroadcastStore
from core.storage.broadcast_records import Broadcast, Recipient
from core.storage.records import NewMessage, StoredMessage
from core.storage.sql_broadcasts import callback_data
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.templates import APPROVED, Template, TemplateError

log = logging.getLogger("core.broadcasts")

# Meta's throughput (130429), spam (131048) and pair rate (131056) errors: the broadcast pauses, then goes on.
PAUSE_CODES = frozenset({130429, 131048, 131056})
# A broadcast whose client or template is gone waits this long before it is looked at again.
BLOCKED_SECONDS = 3600.0
DUE_AT_ONCE = 10  # broadcasts looked at per pass
# The last part of a lease in which no send starts (the recipient goes back to the queue): claims hand out slots
# within the first half, so only a process stalled that long gives any back.
LEASE_MARGIN = 0.25
# How late after its booked slot a send may still start: later, the recipient is booked again. A quarter second
# keeps any 1 s window within 1.25x the rate.
LATE_SLOT_SECONDS = 0.25


@dataclass(frozen=True)
class _To:
    """A recipient as the sender takes it: a phone-based wa_id, else a business-scoped user id."""

    wa_id: str | None
    user_id: str | None

    @classmethod
    def of(cls, user_key: str) -> _To:
        return cls(user_key, None) if user_key.isdigit() else cls(None, user_key)


@dataclass
class _Flight:
    """One broadcast's batches this process booked and has not finished (the one sending and the next, prepared);
    `halt` is set by the first pause error, so none of them starts another send."""

    halt: asyncio.Event = field(default_factory=asyncio.Event)
    batches: list[asyncio.Task[None]] = field(default_factory=list)


class BroadcastRunner:
    """Works due broadcasts in the background; `kick()` when one is created or becomes due."""

    def __init__(self, store: BroadcastStore, registry: ClientRegistry, senders: Senders, clock: Clock,
                 *, owner: str, rate_per_second: float, lease_seconds: float = 60.0, batch_size: int = 100,
                 poll_seconds: float = 1.0, pause_base_seconds: float = 5.0, pause_max_seconds: float = 900.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._store = store
        self._registry = registry
        self._senders = senders
        self._rate = rate_per_second  # the number's broadcast sends a second, all processes together
        self._clock = clock
        self._sleep = sleep
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._pause_base = pause_base_seconds
        self._pause_max = pause_max_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._flights: dict[int, _Flight] = {}
        self._batches: set[asyncio.Task[None]] = set()

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="broadcasts")

    async def stop(self, grace_seconds: float) -> None:
        """Finish the batches in hand for `grace_seconds`, then cancel them (their leases lapse; another process goes
        on). No batch is claimed once stopping."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + grace_seconds
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # Read after the loop ended: a batch it booked while stopping began is in the set.
        batches = set(self._batches)
        if not batches:
            return
        _, late = await asyncio.wait(batches, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def run_due(self) -> int:
        """Claim, store and book one batch of each due broadcast, its sends left running; returns how many recipients
        were claimed. A broadcast with a batch still sending and the next one booked waits for the first."""
        worked = 0
        for broadcast in await self._store.due_broadcasts(self._clock.now(), DUE_AT_ONCE):
            worked += await self._work(broadcast)
        return worked

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self._poll_seconds
            try:
                if await self.run_due():
                    continue
                due = await self._store.next_broadcast_due()
                if due is not None:
                    delay = min(self._poll_seconds, max(0.01, (due - self._clock.now()).total_seconds()))
            except Exception:
                log.exception("broadcasts.store_failed", extra={"owner": self._owner})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _work(self, broadcast: Broadcast) -> int:
        fields = {"client": broadcast.client, "broadcast": broadcast.id}
        flight = await self._room(broadcast.id)
        if self._stopping:
            return 0
        client = self._registry.get(broadcast.client)
        template = await self._store.get_template(broadcast.client, broadcast.template, broadcast.language)
        if client is None or template is None or template.status != APPROVED:
            reason = ("the client is not configured here" if client is None else
                      f"template {broadcast.template} ({broadcast.language}) is not approved or no longer exists")
            log.error("broadcasts.blocked", extra={**fields, "error": reason})
            await self._pause(broadcast, reason, BLOCKED_SECONDS)
            return 0
        recipients = await self._store.claim_recipients(broadcast.id, self._owner, self._clock.now(),
                                                        self._lease_seconds, self._batch_size,
                                                        rate_per_second=self._rate)
        if not recipients:
            return 0
        sender = self._senders.for_client(client)

        async def prepare(recipient: Recipient) -> tuple[Recipient, NewMessage, StoredMessage] | None:
            message = None if recipient.opted_out else _message(broadcast, template, recipient)
            stored = await self._store.prepare_recipient(broadcast, recipient, message, self._clock.now())
            return None if stored is None or message is None else (recipient, message, stored)

        try:
            ready = [item for item in await asyncio.gather(*(prepare(r) for r in recipients)) if item is not None]
        except TemplateError as error:  # the template changed since the broadcast was checked against it
            log.error("broadcasts.template_changed", extra={**fields, "error": str(error)})
            await self._store.release_recipients([r.id for r in recipients], self._owner, self._clock.now())
            await self._pause(broadcast, str(error), BLOCKED_SECONDS)
            return 0
        # Booked once the messages are stored, so no slot passes while they are written (late sends would bunch).
        # Booked while the previous batch still sends, they follow its last slot: the number does not idle.
        slots = await self._store.book_send_slots(broadcast.phone_number_id, len(ready), self._clock.now(), self._rate)
        task = asyncio.create_task(self._send(broadcast, client, sender, list(zip(ready, slots, strict=True)), flight),
                                   name=f"broadcast-{broadcast.id}")
        self._batches.add(task)
        self._flights[broadcast.id] = flight
        flight.batches.append(task)
        task.add_done_callback(lambda done: self._batch_done(broadcast.id, flight, done))
        return len(recipients)

    async def _room(self, broadcast_id: int) -> _Flight:
        """Wait until at most one batch of the broadcast is in flight here (none after a pause error): the next batch
        is prepared while one sends, not more, so a process that dies leaves few booked slots idle."""
        while True:
            flight = self._flights.get(broadcast_id)
            if flight is None:
                return _Flight()  # stored with its first batch
            pending = [task for task in flight.batches if not task.done()]
            keep = 0 if flight.halt.is_set() else 1
            if len(pending) <= keep:
                return _Flight() if flight.halt.is_set() else flight  # paused and settled: afresh
            await asyncio.wait(pending[:len(pending) - keep])

    def _batch_done(self, broadcast_id: int, flight: _Flight, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        flight.batches.remove(task)
        if not flight.batches and self._flights.get(broadcast_id) is flight:
            del self._flights[broadcast_id]
        self._wake.set()  # room for the next batch, or the broadcast may be done

    async def _send(self, broadcast: Broadcast, client: Client, sender: WhatsAppSender,
                    batch: list[tuple[tuple[Recipient, NewMessage, StoredMessage], datetime]], flight: _Flight) -> None:
        """Send a booked batch, each at its slot, record each outcome, then give back what was not sent."""
        fields = {"client": broadcast.client, "broadcast": broadcast.id}
        halt = flight.halt
        held: list[int] = []
        errors: list[WhatsAppError] = []

        async def one(recipient: Recipient, message: NewMessage, stored: StoredMessage, slot: datetime) -> None:
            await self._until(slot)
            if halt.is_set() or self._lease_ending(recipient) or self._missed(slot):
                held.append(recipient.id)
                return
            try:
                wamid = await sender.send_template(broadcast.phone_number_id, client.access_token,
                                                   _To.of(recipient.user_key), message.payload["template"],  # type: ignore[index]
                                                   callback_data(broadcast.id, recipient.id))
            except WhatsAppError as error:
                if error.code in PAUSE_CODES:
                    if not halt.is_set():  # the first one pauses the broadcast, once for all its batches here
                        errors.append(error)
                    halt.set()
                    held.append(recipient.id)
                elif error.status_code is None:
                    # It may have reached Meta (a timeout): left in doubt, its status webhook or its lease decides.
                    log.warning("broadcasts.send_unknown", extra={**fields, "recipient": recipient.id,
                                                                  "error": str(error)[:200]})
                elif error.is_transient:
                    held.append(recipient.id)
                else:
                    log.warning("broadcasts.send_refused", extra={**fields, "recipient": recipient.id,
                                                                  "code": error.code, "error": str(error)[:200]})
                    await self._store.record_recipient(recipient.id, stored.id, None, "failed", error.as_record(),
                                                       self._clock.now())
                return
            status = "sandbox" if client.send_mode == "sandbox" else "sent"
            await self._store.record_recipient(recipient.id, stored.id, wamid, status, None, self._clock.now())

        try:
            await asyncio.gather(*(one(*item, slot) for item, slot in batch))
            await self._store.release_recipients(held, self._owner, self._clock.now())
            if errors:
                error = errors[0]
                wait = min(self._pause_max, self._pause_base * 2 ** broadcast.pauses)
                log.warning("broadcasts.paused", extra={**fields, "code": error.code, "wait_seconds": wait,
                                                        "error": str(error)[:200]})
                await self._pause(broadcast, f"code {error.code}: {error}", wait)
            elif broadcast.pauses and not halt.is_set():
                await self._store.broadcast_progressed(broadcast.id, self._clock.now())
        except Exception:
            # What it held waits for its lease; another batch or process goes on.
            log.exception("broadcasts.store_failed", extra={**fields, "owner": self._owner})

    async def _until(self, slot: datetime | None) -> None:
        """Wait for the recipient's send slot (handed out by the claim from the number's shared slots)."""
        if slot is not None:
            delay = (slot - self._clock.now()).total_seconds()
            if delay > 0:
                await self._sleep(delay)

    def _missed(self, slot: datetime | None) -> bool:
        # A process the machine held back wakes for several slots at once; sent together they would pass the
        # number's rate (the other processes send on their own slots meanwhile). Those go back to the queue.
        return slot is not None and (self._clock.now() - slot).total_seconds() > LATE_SLOT_SECONDS

    def _lease_ending(self, recipient: Recipient) -> bool:
        # A send started this late could still be in flight when another process claims the recipient again.
        if recipient.lease_until is None:
            return False
        margin = timedelta(seconds=self._lease_seconds * LEASE_MARGIN)
        return self._clock.now() >= recipient.lease_until - margin

    async def _pause(self, broadcast: Broadcast, reason: str, seconds: float) -> None:
        now = self._clock.now()
        await self._store.pause_broadcast(broadcast.id, now + timedelta(seconds=seconds), reason[:500], now)


def _message(broadcast: Broadcast, template: Template, recipient: Recipient) -> NewMessage:
    """The recipient's outbound template message (pending), stored in their conversation before it is sent."""
    bound = template.bind(for_person(broadcast.parameters, recipient))
    return NewMessage(direction="out", role="operator", type="template", text=template.render(bound),
                      payload={"template": template.message(bound), "broadcast": broadcast.id}, status="pending")
