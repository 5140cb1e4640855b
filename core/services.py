"""The long-lived pieces of a running server, built in the lifespan and reached through `request.state`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from openai import AsyncOpenAI

from core.clients import ClientRegistry
from core.config import Settings
from core.conversation.processor import Processor, Senders
from core.conversation.scheduler import Scheduler
from core.llm.agent import Agent, OfflineResponder, OpenAIAgent
from core.storage.base import Store
from core.storage.records import Debounce
from core.storage.sqlite import SQLiteStore
from core.whatsapp.client import GraphSender
from core.whatsapp.sandbox import SandboxSender

log = logging.getLogger("core.services")

# Heroku sends SIGKILL 30 s after SIGTERM; gunicorn's graceful timeout is 25 s.
SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: ClientRegistry
    store: Store
    scheduler: Scheduler
    debounce: Debounce


def open_store(settings: Settings) -> Store:
    """The store DATABASE_URL names."""
    return SQLiteStore(settings.sqlite_path)


def build_agent(settings: Settings) -> tuple[Agent, AsyncOpenAI | None]:
    """The OpenAI agent when a key is set, else the offline responder."""
    if settings.openai_api_key is None:
        log.warning("llm.offline", extra={"detail": "OPENAI_API_KEY is not set: every client answers with its offline message"})
        return OfflineResponder(), None
    openai = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
    )
    return OpenAIAgent(openai, settings.max_tool_rounds), openai


@asynccontextmanager
async def run_services(settings: Settings, registry: ClientRegistry) -> AsyncIterator[Services]:
    """Open the store and HTTP clients, run the scheduler, and close everything in reverse order."""
    store = open_store(settings)
    await store.open()
    agent, openai = build_agent(settings)
    async with httpx.AsyncClient(timeout=settings.whatsapp_timeout_seconds) as http:
        senders = Senders(live=GraphSender(http, settings.whatsapp_api_base_url), sandbox=SandboxSender())
        processor = Processor(store, registry, agent, senders, history_messages=settings.history_messages,
                              lease_seconds=settings.lease_seconds, retry_seconds=settings.lease_seconds)
        scheduler = Scheduler(store, processor.process, lease_seconds=settings.lease_seconds,
                              poll_seconds=settings.scheduler_poll_seconds, concurrency=settings.scheduler_concurrency)
        scheduler.start()
        try:
            yield Services(settings, registry, store, scheduler,
                           Debounce(settings.debounce_seconds, max(settings.debounce_max_seconds, settings.debounce_seconds)))
        finally:
            await scheduler.stop(SHUTDOWN_GRACE_SECONDS)
            if openai is not None:
                await openai.close()
            await store.close()


def get_services(request: Request) -> Services:
    return request.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
