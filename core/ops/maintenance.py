"""The store-side commands of `python -m core` (purge, erase): open what a server opens, do one job, close."""

from __future__ import annotations

from pathlib import Path

from core.clients import discover, load_registry
from core.clock import Clock, SystemClock
from core.config import Settings
from core.contacts.erasure import ErasureReport, erase_contact
from core.ops.retention import JOB, PurgeCounts, purge, retentions
from core.conversation.scheduler import new_owner_id
from core.services import open_media_archive, open_store


async def run_purge(settings: Settings, clock: Clock | None = None) -> dict[str, tuple[int, PurgeCounts]]:
    """The retention job, now: recorded as the day's run, so the servers do not repeat it within a day."""
    clock = clock or SystemClock()
    registry = load_registry(discover(settings.clients_package), settings, Path(".env"))
    store, archive = open_store(settings), open_media_archive(settings)
    await store.open()
    try:
        owner = f"purge:{new_owner_id()}"
        now = clock.now()
        await store.claim_job(JOB, owner, now, now)
        policies = retentions({client.name: client.settings.retention_days for client in registry},
                              settings.retention_days, await store.stored_clients())
        report = await purge(store, archive, policies, now)
        await store.finish_job(JOB, owner, clock.now())
        days = {policy.client: policy.days for policy in policies}
        return {client: (days[client], counts) for client, counts in report.items()}
    finally:
        await archive.aclose()
        await store.close()


async def run_erase(settings: Settings, client: str, user_key: str) -> ErasureReport | None:
    """Erase one person's data with one client, as DELETE /api/v1/<client>/contacts/{user_key} does."""
    store, archive = open_store(settings), open_media_archive(settings)
    await store.open()
    try:
        return await erase_contact(store, archive, client, user_key)
    finally:
        await archive.aclose()
        await store.close()
