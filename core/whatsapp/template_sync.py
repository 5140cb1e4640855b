"""Keeping each client's templates in the store: synced from the Graph API at startup, on a schedule, and when a
template webhook says one changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from core.clients import Client, ClientRegistry
from core.clock import Clock
from core.storage.base import StoreUnavailable, TemplateStore
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.templates import Template, from_graph, read_templates_file

log = logging.getLogger("core.templates")


class TemplateSource(Protocol):
    """Where a live client's templates come from: `GET /{waba-id}/message_templates`, every page."""

    async def list_templates(self, waba_id: str, token: str | None) -> list[dict[str, Any]]: ...


class TemplateSync:
    """Syncs every client's templates at start, every `interval_seconds` (None: never again), and on `kick`."""

    def __init__(self, store: TemplateStore, registry: ClientRegistry, source: TemplateSource, clock: Clock,
                 interval_seconds: float | None) -> None:
        self._store = store
        self._registry = registry
        self._source = source
        self._clock = clock
        self._interval = interval_seconds
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wanted = {client.name for client in self._registry}
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="template-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kick(self, client: str) -> None:
        """Sync this client's templates soon (a webhook said one changed); never waits for it."""
        self._wanted.add(client)
        self._wake.set()

    async def sync(self, client: Client) -> list[Template] | None:
        """Replace the client's stored templates with its current ones; None when it has no source of them."""
        if client.send_mode == "sandbox":
            path = getattr(client.settings, "templates_file", None)
            if path is None:
                return None  # a sandbox client has the templates it is given, and none otherwise
            items = read_templates_file(path)
        elif not client.waba_ids:
            log.warning("templates.no_waba", extra={"client": client.name,
                                                     "detail": f"set {client.env_prefix}WABA_IDS to sync its templates"})
            return None
        else:
            items = []
            for waba_id in sorted(client.waba_ids):
                items += await self._source.list_templates(waba_id, client.access_token)
        templates = [template for template in map(from_graph, items) if template is not None]
        await self._store.replace_templates(client.name, templates, self._clock.now())
        log.info("templates.synced", extra={"client": client.name, "count": len(templates)})
        return templates

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            if not self._wake.is_set():  # the schedule, not a kick
                self._wanted |= {client.name for client in self._registry}
            self._wake.clear()
            names, self._wanted = sorted(self._wanted), set()
            for name in names:
                client = self._registry.get(name)
                if client is not None:
                    await self._sync_logged(client)

    async def _sync_logged(self, client: Client) -> None:
        """One client's sync; a failure is logged with the client and leaves its stored templates as they were."""
        try:
            await self.sync(client)
        except WhatsAppError as error:
            log.error("templates.sync_failed", extra={"client": client.name, "code": error.code, "error": str(error)})
        except StoreUnavailable:
            log.error("templates.sync_not_stored", extra={"client": client.name})
        except Exception:
            log.exception("templates.sync_failed", extra={"client": client.name})
