"""The effects outbox's worker: claims due effects from the store and carries each out, with retries.

An effect is claimed under a lease, so one process carries it out at a time; a process that dies mid-way leaves it
to the next claim when the lease ends. Emails get a Message-ID made from the effect, so the rare repeat (a crash
between the SMTP server accepting one and the store recording it) is recognisable as the same message."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta
from typing import Protocol

from core.clients import ClientRegistry
from core.clock import Clock
from core.metrics import Metrics
from core.notify.email import Email, describe_error, is_temporary
from core.retry import RetryPolicy
from core.storage.base import EffectStore, StoreUnavailable
from core.storage.records import Effect

log = logging.getLogger("core.effects")

BATCH = 20


class Mailer(Protocol):
    async def send(self, email: Email) -> dict[str, tuple[int, bytes]]: ...


class EffectRunner:
    """Carries out due effects in the background; `kick()` after a turn stored some, and on every scheduler pass."""

    def __init__(self, store: EffectStore, registry: ClientRegistry, mailer: Mailer, clock: Clock, *, owner: str,
                 lease_seconds: float = 120.0, attempts: int = 6, base_seconds: float = 2.0,
                 max_wait_seconds: float = 600.0, metrics: Metrics | None = None) -> None:
        self._store = store
        self._metrics = metrics or Metrics()
        self._registry = registry
        self._mailer = mailer
        self._clock = clock
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._attempts = attempts
        self._base_seconds = base_seconds
        self._max_wait_seconds = max_wait_seconds
        self._settling = RetryPolicy(attempts=1000, base_seconds=0.1, max_wait_seconds=2.0,
                                     deadline_seconds=lease_seconds)
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def kick(self) -> None:
        """Look for due effects now (once more after the current pass, if one is running)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._drain(), name="effects")

    async def stop(self, grace_seconds: float) -> None:
        """Let the current pass finish for `grace_seconds`, then cancel it (its leases lapse, others retry)."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_due(self) -> int:
        """Carry out every effect due now; returns how many were attempted."""
        done = 0
        while True:
            effects = await self._store.claim_effects(self._owner, self._clock.now(), self._lease_seconds, BATCH)
            if not effects:
                return done
            await asyncio.gather(*(self._carry_out(effect) for effect in effects))
            done += len(effects)

    async def _drain(self) -> None:
        while True:
            self._again = False
            try:
                await self.run_due()
            except Exception:
                log.exception("effects.store_failed", extra={"owner": self._owner})
            if not self._again:
                return

    async def _carry_out(self, effect: Effect) -> None:
        fields = {"client": effect.client, "conversation": effect.conversation_id, "effect": effect.id,
                  "kind": effect.kind, "attempt": effect.attempts + 1}
        client = self._registry.get(effect.client)
        smtp = client.settings.smtp_config() if client is not None else None
        if effect.kind != "email" or client is None or smtp is None:
            reason = (f"unknown kind {effect.kind}" if effect.kind != "email" else
                      "the client is not configured here" if client is None else
                      f"no SMTP configured: set {client.env_prefix}SMTP_HOST and _SMTP_TO")
            await self._give_up(effect, fields, reason)
            return
        data = effect.data
        email = Email(client.name, smtp, data["subject"], data["body"], reply_to=data.get("reply_to"),
                      message_id=f"<effect-{effect.id}.{effect.batch_id}@{client.name}.whatsapp-bot>")
        try:
            refused = await self._mailer.send(email)
        except Exception as error:
            reason = describe_error(error, email)
            if is_temporary(error) and effect.attempts + 1 < self._attempts:
                wait = min(self._max_wait_seconds, self._base_seconds * 2 ** effect.attempts) * random.uniform(0.8, 1.2)
                log.warning("effects.retry", extra={**fields, "wait_seconds": round(wait, 1), "error": reason})
                await self._settle(effect, error=reason, retry_at=self._clock.now() + timedelta(seconds=wait))
            else:
                await self._give_up(effect, fields, reason)
            return
        if refused:
            log.error("effects.email_partly_refused", extra={**fields, "refused": ", ".join(sorted(refused))})
        await self._settle(effect)
        log.info("effects.done", extra={**fields, "recipients": len(email.recipients)})

    async def _settle(self, effect: Effect, *, error: str | None = None, retry_at: datetime | None = None) -> None:
        """Record what became of the effect, waiting out a store that is down for a moment: an email sent but not
        recorded would be sent again when its lease ends, and one to retry would wait for that lease."""
        async for attempt in self._settling.retrying(lambda failure: isinstance(failure, StoreUnavailable)):
            with attempt:
                await self._store.settle_effect(effect, self._owner, self._clock.now(), error=error, retry_at=retry_at)

    async def _give_up(self, effect: Effect, fields: dict, reason: str) -> None:
        log.error("effects.failed", extra={**fields, "error": reason})
        await self._settle(effect, error=reason)
        if effect.conversation_id is not None:
            await self._store.flag(effect.conversation_id, f"a staff email could not be sent ({reason[:200]})")
            self._metrics.flagged(effect.client)
