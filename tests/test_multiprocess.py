"""Several server processes on one PostgreSQL database answer as one: one reply per burst, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.postgres import run_async
from tests.processes import ServerProcess, free_port, server_process, uvicorn_command
from tests.support import new_wamid, signed, text_delivery, wait_for

USERS = 200
MESSAGES = 3
# A burst is one turn when each message is stored less than the debounce after the one before it (and the whole burst
# within DEBOUNCE_MAX_SECONDS). The load generator shares the machine with three servers, so both are generous and
# the test checks that premise from what it measured, not from how fast the machine happened to be.
DEBOUNCE_SECONDS = 4.0
DEBOUNCE_MAX_SECONDS = 30.0


def gunicorn_command(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "core.main:app", "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers),
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"]


def environment(database_url: str, graph: FakeGraph, llm: FakeOpenAI, lease_seconds: float) -> dict[str, str]:
    return {**EMPRENDEMY.env(), "DATABASE_URL": database_url, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.url,
            "WHATSAPP_API_BASE_URL": graph.url, "DEBOUNCE_SECONDS": str(DEBOUNCE_SECONDS),
            "DEBOUNCE_MAX_SECONDS": str(DEBOUNCE_MAX_SECONDS), "LEASE_SECONDS": str(lease_seconds),
            "SCHEDULER_POLL_SECONDS": "0.3", "LOG_LEVEL": "WARNING", "WHATSAPP_PAIR_INTERVAL_SECONDS": "0",
            "SCHEDULER_CONCURRENCY": "32", "CLIENT_CONCURRENCY": "32"}


async def send_bursts(urls: list[str], users: list[str]) -> None:
    """Each user's messages, round-robin over the servers; every third user's messages are then delivered twice more."""
    servers = itertools.cycle(urls)
    limits = asyncio.Semaphore(32)
    gaps: list[float] = []
    spans: list[float] = []

    async def burst(http: httpx.AsyncClient, index: int, user: str) -> None:
        now = int(time.time())
        deliveries = [signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, user, f"m{n}",
                                           wamid=new_wamid(), timestamp=now + n), EMPRENDEMY.secret)
                      for n in range(MESSAGES)]
        async with limits:
            started = previous = time.monotonic()
            for raw, headers in deliveries:
                response = await http.post(next(servers) + "/webhook", content=raw, headers=headers)
                assert response.status_code == 200, response.text
                # From sending the previous message to this one's 200: at least the time between the two stores.
                done = time.monotonic()
                gaps.append(done - previous)
                previous = done
            spans.append(time.monotonic() - started)
            for raw, headers in deliveries * (2 if index % 3 == 0 else 0):  # Meta's redeliveries change nothing
                response = await http.post(next(servers) + "/webhook", content=raw, headers=headers)
                assert response.status_code == 200, response.text

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(burst(http, index, user) for index, user in enumerate(users)))
    assert max(gaps) < DEBOUNCE_SECONDS and max(spans) < DEBOUNCE_MAX_SECONDS, \
        f"premise: a burst's messages came {max(gaps):.2f} s apart ({max(spans):.2f} s in all): the debounce would split it"


def check_every_burst_answered_once(url: str, graph: FakeGraph, users: list[str]) -> None:
    replies: dict[str, list[str]] = {}
    for call in graph.texts():
        replies.setdefault(call.body["to"], []).append(call.text)
    assert sorted(replies) == sorted(users)
    assert {user: texts for user, texts in replies.items() if len(texts) != 1} == {}
    # The model saw each burst whole and in order (the stand-in echoes what it was given).
    assert {text for texts in replies.values() for text in texts} == {"echo: m0 | m1 | m2"}
    auth = {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}
    api = f"{url}/api/v1/{EMPRENDEMY.name}/conversations"
    conversations = httpx.get(f"{api}?limit=500", headers=auth).json()
    assert sorted(c["user_key"] for c in conversations) == sorted(users)
    for conversation in conversations:
        messages = httpx.get(f"{api}/{conversation['id']}/messages", headers=auth).json()
        assert [(m["direction"], m["text"]) for m in messages if m["direction"] != "internal"] == \
            [("in", "m0"), ("in", "m1"), ("in", "m2"), ("out", "echo: m0 | m1 | m2")]


def test_three_servers_on_one_database_answer_each_burst_once(tmp_path: Path, postgres_url: str, graph: FakeGraph,
                                                              llm: FakeOpenAI):
    env = environment(postgres_url, graph, llm, lease_seconds=10)
    users = [f"549117{n:07d}" for n in range(USERS)]
    with ExitStack() as stack:
        servers: list[ServerProcess] = []
        for name in "abc":
            port = free_port()
            servers.append(stack.enter_context(server_process(uvicorn_command(port), port, env, tmp_path / f"{name}.log")))
        asyncio.run(send_bursts([server.url for server in servers], users))
        wait_for(lambda: len({c.body["to"] for c in graph.texts()}) == USERS, timeout=60, interval=0.1,
                 what="every burst to be answered")
        wait_for(lambda: all_settled(servers[0].url), timeout=60, interval=0.1, what="every conversation to settle")
        check_every_burst_answered_once(servers[1].url, graph, users)


def test_batches_held_by_a_killed_server_are_answered_once_after_their_lease(tmp_path: Path, postgres_url: str,
                                                                             graph: FakeGraph, llm: FakeOpenAI):
    env = environment(postgres_url, graph, llm, lease_seconds=3)
    users = [f"549118{n:07d}" for n in range(60)]
    llm.gate.clear()  # every turn waits in the model until the victim is dead
    with ExitStack() as stack:
        servers = []
        for name in "abc":
            port = free_port()
            servers.append(stack.enter_context(server_process(uvicorn_command(port), port, env, tmp_path / f"{name}.log")))
        asyncio.run(send_bursts([server.url for server in servers], users))
        # Every burst is in a model call (the servers have 96 slots for 60 turns); kill a server that holds some.
        wait_for(lambda: len(llm.requests) >= len(users), timeout=60, what="every burst to reach the model")
        assert len(llm.requests) == len(users), "premise: each burst is one turn"
        holders = run_async(lease_owner_pids(postgres_url))
        victim = next(server for server in servers if server.process.pid in holders)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        llm.gate.set()
        wait_for(lambda: len({c.body["to"] for c in graph.texts()}) == len(users), timeout=60, interval=0.1,
                 what="every burst, the dead server's included, to be answered")
        # Asked of the survivors: the victim is whichever server held leases, servers[1] or [2] included.
        alive = [server for server in servers if server is not victim]
        wait_for(lambda: all_settled(alive[0].url), timeout=60, interval=0.1, what="every conversation to settle")
        check_every_burst_answered_once(alive[1].url, graph, users)
    # The dead server had asked the model for some bursts: those were asked again by the survivors, answered once.
    assert len(llm.requests) > len(users)


@pytest.mark.parametrize("workers", [3])
def test_gunicorn_with_several_workers_on_postgres_answers_a_burst_once(tmp_path: Path, postgres_url: str,
                                                                        graph: FakeGraph, llm: FakeOpenAI, workers: int):
    env = environment(postgres_url, graph, llm, lease_seconds=10)
    port = free_port()
    users = [f"549119{n:07d}" for n in range(30)]
    with server_process(gunicorn_command(port, workers), port, env, tmp_path / "gunicorn.log") as server:
        asyncio.run(send_bursts([server.url], users))
        wait_for(lambda: len({c.body["to"] for c in graph.texts()}) == len(users), timeout=60, interval=0.1,
                 what="every burst to be answered")
        wait_for(lambda: all_settled(server.url), timeout=60, interval=0.1, what="every conversation to settle")
        check_every_burst_answered_once(server.url, graph, users)


async def lease_owner_pids(database_url: str) -> set[int]:
    """Processes holding a lease now (an owner is named <host>:<pid>:<random>)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT DISTINCT lease_owner FROM conversations WHERE lease_owner IS NOT NULL")
    finally:
        await conn.close()
    return {int(row["lease_owner"].split(":")[1]) for row in rows}


def all_settled(url: str) -> bool:
    auth = {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}
    conversations = httpx.get(f"{url}/api/v1/{EMPRENDEMY.name}/conversations?limit=500", headers=auth).json()
    return bool(conversations) and all(c["due_at"] is None for c in conversations)
