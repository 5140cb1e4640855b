"""How many turns run at once, on the real SQLite store with the real processor: a campaign burst of one client all
starts at once; clients that compete for slots share them; a model endpoint's 429s lower the calls in flight and
successes raise them again. In every case each conversation is answered exactly once."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from core.clients import Client, ClientRegistry
from core.conversation.media import MediaReader
from core.conversation.outbox import Outbox
from core.conversation.processor import Processor, ProcessorTiming, Senders
from core.conversation.scheduler import Scheduler
from core.llm.agent import Agent, OpenAIAgent, Turn, TurnResult
from core.llm.ratelimit import ModelEndpoints
from core.retry import RetryPolicy
from core.services import held_back
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage
from tests.fakes.clock import ManualClock
from tests.fakes.openai import FakeOpenAI
from tests.unit.fakes import NO_WAIT_RETRY, T0, FakeSender, eventually, instant_pacer, make_client

pytestmark = pytest.mark.anyio

_numbers = itertools.count(5491155560000)


class GatedAgent:
    """A model that thinks until the test lets a turn end (`finish`) or all of them (`open`), counting the turns it
    holds at once, per client."""

    def __init__(self) -> None:
        self._tickets = asyncio.Semaphore(0)
        self._open = False
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def finish(self, count: int = 1) -> None:
        for _ in range(count):
            self._tickets.release()

    def open(self) -> None:
        self._open = True
        self.finish(10_000)

    async def run(self, turn: Turn) -> TurnResult:
        client = turn.client.name
        self.running[client] += 1
        self.most[client] = max(self.most[client], self.running[client])
        try:
            if not self._open:
                await self._tickets.acquire()
        finally:
            self.running[client] -= 1
        return TurnResult(reply=f"hola {turn.conversation.user_key}")


class Service:
    """The scheduler and processor of one process over a SQLite file, with a recording WhatsApp sender."""

    def __init__(self, store: SQLiteStore, agent: Agent, clients: list[Client], *, concurrency: int = 256,
                 client_cap: int | None = None, endpoints: ModelEndpoints | None = None) -> None:
        self.store = store
        self.clock = ManualClock(T0)
        self.clients = {client.name: client for client in clients}
        self.sender = FakeSender()
        registry = ClientRegistry(clients)
        processor = Processor(store, registry, agent, Senders(live=self.sender, sandbox=FakeSender()),
                              MediaReader(store, None, 1_000_000), Outbox(store, instant_pacer(), NO_WAIT_RETRY, self.clock),
                              ProcessorTiming(lease_seconds=60, retry_seconds=30, typing_refresh_seconds=60,
                                              history_messages=20), self.clock)
        limiter = next(iter(endpoints), None) if endpoints is not None else None
        self.scheduler = Scheduler(store, processor.process, self.clock, lease_seconds=60, poll_seconds=30,
                                   concurrency=concurrency, client_cap=client_cap, owner="unit",
                                   held_back=held_back(registry, limiter))
        if limiter is not None:
            limiter.set_listener(self.scheduler.nudge)

    async def messages_from(self, client: str, count: int) -> list[str]:
        """`count` people write to `client` at once; returns their numbers."""
        users = [str(next(_numbers)) for _ in range(count)]
        for user in users:
            phone = self.clients[client].settings.phone_number_ids[0]
            message = InboundMessage(waba_id="1001", phone_number_id=phone, wamid=f"wamid.{user}", user_key=user,
                                     wa_id=user, user_id=None, contact_name=None, type="text", text="quiero info",
                                     wa_timestamp=self.clock.now(), payload={"type": "text"})
            await self.store.record_inbound(client, message, self.clients[client].debounce, self.clock.now())
        return users

    def burst_settled(self) -> None:
        """The debounce has passed: every burst is due."""
        self.clock.advance(max(client.debounce.max_seconds for client in self.clients.values()))
        self.scheduler.nudge()

    async def replies(self) -> Counter[str]:
        """Replies sent per person (what WhatsApp received)."""
        return Counter(sent.to for sent in self.sender.sent if sent.to is not None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "unit.db")
    await opened.open()
    yield opened
    await opened.close()


@asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    service.scheduler.start()
    try:
        yield service
    finally:
        await asyncio.wait_for(service.scheduler.stop(grace_seconds=0), 5)


DEMO = make_client("demo", phone_number_ids=("2001",))
OTHER = make_client("other", phone_number_ids=("2002",), waba_ids=("1002",))


class TestOneClientAlone:
    async def test_a_campaign_burst_of_200_people_all_start_at_once_with_the_defaults(self, store: SQLiteStore) -> None:
        agent = GatedAgent()
        service = Service(store, agent, [DEMO])  # the defaults: 256 slots, no per-client cap
        users = await service.messages_from("demo", 200)
        async with running(service):
            service.burst_settled()
            await eventually(lambda: agent.running["demo"] == 200, timeout=20)
            agent.open()
            await eventually(lambda: len(service.sender.sent) == 200, timeout=20)
        assert await service.replies() == Counter({user: 1 for user in users})

    async def test_an_operators_cap_still_holds(self, store: SQLiteStore) -> None:
        agent = GatedAgent()
        service = Service(store, agent, [DEMO], client_cap=4)
        users = await service.messages_from("demo", 10)
        async with running(service):
            service.burst_settled()
            await eventually(lambda: agent.running["demo"] == 4)
            agent.open()
            await eventually(lambda: len(service.sender.sent) == 10, timeout=10)
        assert agent.most["demo"] == 4
        assert await service.replies() == Counter({user: 1 for user in users})


class TestContention:
    async def test_two_clients_share_the_slots_and_the_one_that_came_first_does_not_keep_them(
            self, store: SQLiteStore) -> None:
        agent = GatedAgent()
        service = Service(store, agent, [DEMO, OTHER], concurrency=8)
        early = await service.messages_from("demo", 20)
        async with running(service):
            service.burst_settled()
            await eventually(lambda: agent.running["demo"] == 8)  # alone: every slot
            late = await service.messages_from("other", 20)
            service.burst_settled()
            # One demo turn ends at a time: each freed slot goes to "other" until it holds its share.
            for ended in range(1, 5):
                agent.finish()
                await eventually(lambda: agent.running["other"] == ended)
                assert sum(agent.running.values()) == 8
            assert agent.running == {"demo": 4, "other": 4}
            agent.open()
            await eventually(lambda: len(service.sender.sent) == 40, timeout=20)
        assert await service.replies() == Counter({user: 1 for user in [*early, *late]})
        assert agent.most["demo"] == 8 and agent.most["other"] == 4

    async def test_both_waiting_at_once_get_half_each(self, store: SQLiteStore) -> None:
        agent = GatedAgent()
        service = Service(store, agent, [DEMO, OTHER], concurrency=8)
        users = [*await service.messages_from("demo", 12), *await service.messages_from("other", 12)]
        async with running(service):
            service.burst_settled()
            await eventually(lambda: sum(agent.running.values()) == 8)
            assert agent.running == {"demo": 4, "other": 4}
            agent.open()
            await eventually(lambda: len(service.sender.sent) == 24, timeout=20)
        assert await service.replies() == Counter({user: 1 for user in users})


class TestModelRateLimits:
    async def test_a_429_halves_the_calls_in_flight_and_successes_bring_them_back(
            self, store: SQLiteStore, llm: FakeOpenAI) -> None:
        clock = ManualClock(T0)
        endpoints = ModelEndpoints(16, clock, base_pause_seconds=0.01)  # LLM_CONCURRENCY=16
        limiter = endpoints.limiter(llm.url, "sk-test")
        async with AsyncOpenAI(api_key="sk-test", base_url=llm.url, max_retries=0, timeout=30) as openai:
            agent = OpenAIAgent(openai, max_tool_rounds=1, history_budget=2000, limiter=limiter, clock=clock,
                                retry=RetryPolicy(attempts=2, base_seconds=0.01, max_wait_seconds=0.01,
                                                  deadline_seconds=30))
            service = Service(store, agent, [DEMO], concurrency=64, endpoints=endpoints)
            llm.refuse_next = 16  # the provider refuses the first 16 calls: 429, Retry-After: 0
            # ... answered only once all 16 have arrived (else, on a busy machine, a retry could be refused in place
            # of a late first attempt: a second episode, halving again)
            llm.refusal_gate.clear()
            llm.gate.clear()  # and holds the calls it accepts until the test lets them go
            first = await service.messages_from("demo", 48)
            async with running(service):
                service.burst_settled()
                await eventually(lambda: llm.refused == 16, timeout=10)
                llm.refusal_gate.set()
                await eventually(lambda: llm.in_flight == 8, timeout=10)
                # Halved once for the whole episode (16 → 8), not once per 429; the 40 others wait in the limiter.
                assert (limiter.allowed, limiter.in_flight, limiter.waiting) == (8, 8, 40)
                assert limiter.saturated and service.scheduler.running == 48
                llm.gate.set()
                await eventually(lambda: len(service.sender.sent) == 48, timeout=20)
                grown = limiter.allowed
                assert grown > 8  # 48 successes: +1 per window of calls

                llm.gate.clear()
                second = await service.messages_from("demo", 48)
                service.burst_settled()
                await eventually(lambda: llm.in_flight == grown, timeout=10)
                assert limiter.in_flight == grown and llm.refused == 16  # more in flight than after the 429s
                llm.gate.set()
                await eventually(lambda: len(service.sender.sent) == 96, timeout=20)
        assert await service.replies() == Counter({user: 1 for user in [*first, *second]})
        assert len(llm.requests) == 96  # each burst answered by one accepted model call
