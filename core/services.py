"""The long-lived pieces of a running server, built in the lifespan and reached through `request.state`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import httpx
from fastapi import Depends, Request
from openai import AsyncOpenAI

from core.broadcasts.runner import BroadcastRunner
from core.clients import ClientRegistry
from core.clock import Clock, SystemClock
from core.config import Settings
from core.conversation.media import MediaReader
from core.knowledge.factory import build_retriever
from core.conversation.outbox import Outbox
from core.conversation.processor import Processor, ProcessorTiming, Senders
from core.conversation.scheduler import Scheduler, new_owner_id
from core.conversation.takeover import release_idle_takeovers
from core.llm.agent import Agent, OfflineResponder, OpenAIAgent
from core.metrics import UNROUTED, Metrics
from core.llm.bounds import TurnBounds
from core.conversation.loop_lag import TurnWindow
from core.llm.concurrency import AdaptiveLimiter
from core.llm.ratelimit import ModelEndpoints
from core.llm.transcription import OpenAITranscriber
from core.ops.budget import BudgetGuard
from core.ops.prices import PriceTable
from core.storage.base import ClientDataStore, Store
from core.storage.postgres import PostgresStore
from core.storage.media import LocalMediaArchive, MediaArchive, SupabaseMediaArchive
from core.storage.sqlite import SQLiteStore
from core.whatsapp.client import GraphSender
from core.whatsapp.pacing import Pacer
from core.effects.runner import EffectRunner
from core.notify.email import SmtpMailer
from core.ops.retention import RetentionJob
from core.retry import RetryPolicy
from core.sandbox import sandbox_secret
from core.toolbox import ServiceToolbox
from core.whatsapp.sandbox import SandboxSender
from core.whatsapp.template_sync import TemplateSync

log = logging.getLogger("core.services")


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: ClientRegistry
    clock: Clock
    store: Store
    scheduler: Scheduler
    senders: Senders
    outbox: Outbox
    # What signs deliveries to sandbox numbers (`python -m core chat`); None when no client is in sandbox mode.
    sandbox_secret: str | None = None
    prices: PriceTable = field(default_factory=PriceTable)  # what model calls cost (defaults + MODEL_PRICES)
    # Where received files are archived (erasure removes a person's).
    media_archive: MediaArchive | None = None
    # Keeps each client's message templates in the store; a template webhook kicks it.
    templates: TemplateSync | None = None
    # This process's Prometheus metrics (core/metrics.py); None only where a test or bench builds Services by hand.
    metrics: Metrics | None = None
    # Works due broadcasts (in the processes that run the scheduler); kicked when one is created.
    broadcasts: BroadcastRunner | None = None


def open_store(settings: Settings) -> Store:
    """The store DATABASE_URL names."""
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(settings.database_url)
    return SQLiteStore(settings.sqlite_path)


def build_agent(settings: Settings, toolbox: ServiceToolbox, clock: Clock,
                limiter: AdaptiveLimiter | None = None,
                metrics: Metrics | None = None) -> tuple[Agent, AsyncOpenAI | None]:
    """The OpenAI agent when a key is set, else the offline responder (knowledge answers, else offline message)."""
    if settings.openai_api_key is None:
        log.warning("llm.offline", extra={"detail": "OPENAI_API_KEY is not set: clients answer from their knowledge "
                                                    "when it matches well, else with their offline message"})
        return OfflineResponder(toolbox.retriever), None
    openai = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        max_retries=0,  # our retries own the backoff and the deadline; a 429 must reach the limiter, not be hidden
    )
    retry = RetryPolicy(attempts=settings.llm_retry_attempts, base_seconds=settings.llm_retry_base_seconds,
                        max_wait_seconds=max(settings.llm_retry_base_seconds, 20.0),
                        deadline_seconds=settings.llm_deadline_seconds)
    bounds = TurnBounds(tool_calls_per_round=settings.max_tool_calls_per_round,
                        tool_calls_per_turn=settings.max_tool_calls_per_turn,
                        batch_messages=settings.max_batch_messages, images=settings.max_images_per_turn,
                        reply_characters=settings.max_reply_characters,
                        records_per_conversation_per_day=settings.max_records_per_conversation_per_day)
    agent = OpenAIAgent(openai, max_tool_rounds=settings.max_tool_rounds, bounds=bounds,
                        history_budget=settings.history_token_budget, retry=retry, toolbox=toolbox,
                        limiter=limiter, clock=clock, metrics=metrics)
    return agent, openai


def model_limiter(settings: Settings, endpoints: ModelEndpoints) -> AdaptiveLimiter | None:
    """The limiter of the model endpoint every client calls (OPENAI_BASE_URL with OPENAI_API_KEY); None offline."""
    if settings.openai_api_key is None:
        return None
    return endpoints.limiter(settings.openai_base_url, settings.openai_api_key.get_secret_value())


def held_back(registry: ClientRegistry, limiter: AdaptiveLimiter | None) -> Callable[[], Collection[str]]:
    """Clients whose turns would only queue for their model endpoint now: they stay in the store meanwhile."""
    names = [client.name for client in registry]

    def clients() -> Collection[str]:
        return names if limiter is not None and limiter.saturated else ()

    return clients


def open_media_archive(settings: Settings) -> MediaArchive:
    """Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_KEY are set, else a local folder."""
    if settings.supabase_url and settings.supabase_service_key:
        return SupabaseMediaArchive(settings.supabase_url, settings.supabase_service_key.get_secret_value(),
                                    settings.supabase_media_bucket)
    return LocalMediaArchive(settings.media_archive_dir)


async def seed_documents(store: ClientDataStore, registry: ClientRegistry, now: datetime) -> None:
    """Put each client's seed documents in the store the first time; after that the store's copy is the truth."""
    for client in registry:
        for key, path in client.spec.seed_documents.items():
            if await store.get_document(client.name, key) is None:
                await store.put_document(client.name, key, json.loads(path.read_text(encoding="utf-8")), now)
                log.info("clients.document_seeded", extra={"client": client.name, "key": key, "file": path.name})


@asynccontextmanager
async def run_services(settings: Settings, registry: ClientRegistry,
                       clock: Clock | None = None) -> AsyncIterator[Services]:
    """Open the store and HTTP clients, run the scheduler, and close everything in reverse order."""
    clock = clock or SystemClock()
    prices = PriceTable(settings.model_prices)
    metrics = Metrics(prices=prices)
    for name in (UNROUTED, *(client.name for client in registry)):
        metrics.client(name)  # the children the hot paths increment, made before the first delivery
    store = open_store(settings)
    await store.open()
    await seed_documents(store, registry, clock.now())
    retriever = build_retriever(settings)
    archive = open_media_archive(settings)
    async with httpx.AsyncClient(timeout=settings.whatsapp_timeout_seconds) as http:
        toolbox = ServiceToolbox(store, retriever, clock, top_k=settings.knowledge_top_k)
        endpoints = ModelEndpoints(settings.llm_concurrency or settings.scheduler_concurrency, clock,
                                   base_pause_seconds=settings.llm_retry_base_seconds)
        limiter = model_limiter(settings, endpoints)
        agent, openai = build_agent(settings, toolbox, clock, limiter, metrics)
        graph = GraphSender(http, settings.whatsapp_api_base_url)
        senders = Senders(live=graph, sandbox=SandboxSender())
        templates = TemplateSync(store, registry, graph, clock, settings.template_sync_seconds or None)
        pacer = Pacer(per_number_per_second=settings.whatsapp_rate_per_second,
                      pair_interval_seconds=settings.whatsapp_pair_interval_seconds)
        outbox = Outbox(store, pacer, RetryPolicy(attempts=settings.whatsapp_retry_attempts,
                                                  base_seconds=settings.whatsapp_retry_base_seconds,
                                                  max_wait_seconds=30.0, deadline_seconds=90.0), clock,
                        templates=store, metrics=metrics)
        transcriber = (OpenAITranscriber(openai, settings.openai_transcription_model, limiter, clock)
                       if openai else None)
        media = MediaReader(store, transcriber, settings.media_max_bytes, archive)
        timing = ProcessorTiming(lease_seconds=settings.lease_seconds, retry_seconds=settings.lease_seconds,
                                 typing_refresh_seconds=settings.typing_refresh_seconds,
                                 history_messages=settings.history_messages, max_failures=settings.turn_max_failures)
        owner = new_owner_id()
        effects = EffectRunner(store, registry, SmtpMailer(), clock, owner=owner, metrics=metrics)
        processor = Processor(store, registry, agent, senders, media, outbox, timing, clock, effects=effects.kick,
                              budget=BudgetGuard(store, prices), metrics=metrics, playground=store)
        retention = RetentionJob(store, archive, {client.name: client.settings.retention_days for client in registry},
                                 settings.retention_days, clock, owner)

        async def housekeeping() -> None:
            await release_idle_takeovers(store, registry, clock)
            await retention.tick()  # the daily purge, in the background, by one process of all
        scheduler = Scheduler(store, processor.process, clock, lease_seconds=settings.lease_seconds,
                              poll_seconds=settings.scheduler_poll_seconds, concurrency=settings.scheduler_concurrency,
                              client_cap=settings.client_concurrency, held_back=held_back(registry, limiter),
                              housekeeping=housekeeping,
                              housekeeping_seconds=settings.housekeeping_seconds, effects=effects.kick, owner=owner,
                              window=TurnWindow(settings.scheduler_concurrency))
        if limiter is not None:
            limiter.set_listener(scheduler.nudge)  # room again at the model: start the turns left in the store
        templates.start()  # in the background: startup never waits on the Graph API
        # Broadcasts share the number's rate across processes through the store; replies keep the rest (pacer).
        broadcasts = BroadcastRunner(store, registry, senders, clock, owner=owner,
                                     rate_per_second=settings.whatsapp_rate_per_second * settings.broadcast_rate_share,
                                     lease_seconds=settings.lease_seconds,
                                     pause_base_seconds=settings.broadcast_pause_seconds)
        if settings.run_scheduler:
            scheduler.start()
            broadcasts.start()
        else:
            log.info("scheduler.disabled", extra={"detail": "RUN_SCHEDULER=false: a worker process answers"})
        try:
            chat_secret = sandbox_secret(settings) if any(c.send_mode == "sandbox" for c in registry) else None
            yield Services(settings, registry, clock, store, scheduler, senders, outbox, chat_secret, prices, archive,
                           templates, metrics, broadcasts)
        finally:
            # Together, within gunicorn's 25 s: claiming stops at once; a turn still running after the grace is
            # cancelled and its conversation released as due (another process answers it at once); effects not
            # carried out by then stay in the store for the next process. Closing the store commits what is queued.
            grace = settings.shutdown_grace_seconds
            log.info("services.stopping", extra={"turns": scheduler.running, "grace_seconds": grace})
            await asyncio.gather(scheduler.stop(grace), effects.stop(grace), retention.stop(), templates.stop(),
                                 broadcasts.stop(grace))
            if openai is not None:
                await openai.close()
            await retriever.aclose()
            await archive.aclose()
            await store.close()


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain def dependency in its thread pool, a hop per request for a field lookup.
    return request.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
