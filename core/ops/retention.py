"""Retention: content older than a client's RETENTION_DAYS is emptied by a daily job; rows and counts stay.

Emptied: message text (transcripts included), payloads, errors and archived files; status reports' payloads;
settled effects' data (an email quotes the conversation). Kept: every row, its direction, role, type, status,
times, tokens and batch, so that usage per day and per conversation still adds up. Work goes in batches of
PURGE_BATCH rows, one short transaction each, so that a big table is never locked at length.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from core.clock import Clock
from core.storage.base import RetentionStore
from core.storage.media import MediaArchive

log = logging.getLogger("core.retention")

JOB = "retention"
PURGE_BATCH = 500
# Once a day; a process looks whether the day's run is due at most this often (a claim is a write).
RUN_EVERY = timedelta(days=1)
CHECK_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long one client's content is kept; 0 days: forever."""

    client: str
    days: int

    def cutoff(self, now: datetime) -> datetime | None:
        """Content created before this instant goes; None when it is kept forever."""
        return now - timedelta(days=self.days) if self.days > 0 else None


@dataclass(slots=True)
class PurgeCounts:
    """What one client's purge emptied (rows stay) and removed (files)."""

    messages: int = 0
    media_files: int = 0
    status_reports: int = 0
    effects: int = 0
    media_failures: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, item.name) for item in fields(self))


def retentions(own: Mapping[str, int | None], default_days: int, stored: Iterable[str] = ()) -> list[Retention]:
    """Each client's retention: its own `<NAME>_RETENTION_DAYS`, else RETENTION_DAYS; clients known only to the
    store (their folder removed) get RETENTION_DAYS too."""
    days = {client: default_days if value is None else value for client, value in own.items()}
    for client in stored:
        days.setdefault(client, default_days)
    return [Retention(client, days[client]) for client in sorted(days)]


async def purge(store: RetentionStore, archive: MediaArchive, policies: Iterable[Retention], now: datetime,
                *, batch: int = PURGE_BATCH) -> dict[str, PurgeCounts]:
    """Empty each client's content older than its retention; safe to run again, or in two processes at once
    (every step only empties what still holds content, and a file already gone counts as removed)."""
    report: dict[str, PurgeCounts] = {}
    for policy in policies:
        cutoff = policy.cutoff(now)
        if cutoff is None:
            continue
        counts = report[policy.client] = PurgeCounts()
        await _purge_messages(store, archive, policy.client, cutoff, batch, counts)
        while (done := await store.clear_status_payloads(policy.client, cutoff, batch)):
            counts.status_reports += done
            if done < batch:
                break
        while (done := await store.clear_effect_data(policy.client, cutoff, batch)):
            counts.effects += done
            if done < batch:
                break
        if counts:
            log.info("retention.purged", extra={"client": policy.client, "days": policy.days, "messages": counts.messages,
                                                "media_files": counts.media_files,
                                                "status_reports": counts.status_reports, "effects": counts.effects})
    return report


async def _purge_messages(store: RetentionStore, archive: MediaArchive, client: str, cutoff: datetime, batch: int,
                          counts: PurgeCounts) -> None:
    # A cursor, not "the first rows still holding content": rows whose file could not be removed keep their
    # media_path for the next run and must not be read again in this one.
    after: tuple[datetime, int] | None = None
    while rows := await store.expired_messages(client, cutoff, after, batch):
        after = (rows[-1].created_at, rows[-1].id)
        paths = [row.media_path for row in rows if row.media_path]
        files_gone = True
        if paths:
            try:
                counts.media_files += await archive.remove(paths)
            except Exception as error:  # the archive's own failure (Storage down): the files wait for the next run
                files_gone = False
                counts.media_failures += len(paths)
                log.warning("retention.media_failed", extra={
                    "client": client, "archive": archive.name, "files": len(paths),
                    "conversations": ",".join(sorted({path.split("/")[-2] for path in paths if path.count("/") >= 2})),
                    "error": f"{type(error).__name__}: {error}"})
        counts.messages += await store.clear_messages([row.id for row in rows], media=files_gone)
        if len(rows) < batch:
            return


class RetentionJob:
    """The daily purge, started by whichever process's scheduler claims the day's run in the store."""

    def __init__(self, store: RetentionStore, archive: MediaArchive, own: Mapping[str, int | None], default_days: int,
                 clock: Clock, owner: str) -> None:
        self._store = store
        self._archive = archive
        self._own = dict(own)
        self._default_days = default_days
        self._clock = clock
        self._owner = owner
        self._next_check: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def tick(self) -> None:
        """Called by the scheduler's housekeeping: start the day's run here if no process has yet (cheap otherwise)."""
        now = self._clock.now()
        if self.running or (self._next_check is not None and now < self._next_check):
            return
        self._next_check = now + CHECK_EVERY
        if not any(policy.days > 0 for policy in retentions(self._own, self._default_days)) and not self._default_days:
            return  # everything is kept forever
        if await self._store.claim_job(JOB, self._owner, now, now - RUN_EVERY):
            self._task = asyncio.create_task(self._run(), name="retention")

    async def _run(self) -> None:
        try:
            policies = retentions(self._own, self._default_days, await self._store.stored_clients())
            await purge(self._store, self._archive, policies, self._clock.now())
            await self._store.finish_job(JOB, self._owner, self._clock.now())
        except Exception:
            # The next day's run takes up where this one stopped: every step is idempotent.
            log.exception("retention.failed", extra={"owner": self._owner})

    async def stop(self) -> None:
        """Stop a run in progress at shutdown: what it emptied stays emptied, the rest waits for the next run."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
