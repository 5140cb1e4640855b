"""A broadcast run by two real server processes, one SIGKILLed mid-run: the survivor finishes it and every recipient
got it exactly once. The Graph stand-in posts each send's signed `sent` status back with its callback data, as Meta
does, so a send the dead process made but never recorded is recorded from its status instead of sent again."""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import DEMO
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.postgres import run_async
from tests.processes import ServerProcess, free_port, server_process, uvicorn_command
from tests.support import wait_for

RECIPIENTS = 300
RATE = 100  # a second: the run lasts about 3 s, the kill comes about a third of the way in
LEASE_SECONDS = 3  # what the dead process held is claimed again this soon
SALUDO = {
    "id": "77", "name": "saludo", "language": "es_AR", "status": "APPROVED", "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "Hola {{1}}", "example": {"body_text": [["Ana"]]}}],
}
AUTH = {"Authorization": f"Bearer {DEMO.api_key}"}


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A shared PostgreSQL database, or one SQLite file that both processes open."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else f"sqlite:///{tmp_path / 'app.db'}"


def environment(database_url: str, graph: FakeGraph, llm: FakeOpenAI) -> dict[str, str]:
    return {**DEMO.env(), "DATABASE_URL": database_url, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.url,
            "WHATSAPP_API_BASE_URL": graph.url, "LEASE_SECONDS": str(LEASE_SECONDS), "LOG_LEVEL": "WARNING",
            "WHATSAPP_RATE_PER_SECOND": str(RATE), "BROADCAST_RATE_SHARE": "1", "SCHEDULER_POLL_SECONDS": "0.3"}


def lease_holders(database_url: str) -> set[int]:
    """Pids of the processes holding broadcast recipients now (an owner is <host>:<pid>:<random>)."""
    query = "SELECT DISTINCT lease_owner FROM broadcast_recipients WHERE state = 'sending' AND lease_owner IS NOT NULL"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30) as db:
            owners = [row[0] for row in db.execute(query)]
    else:
        async def read() -> list[str]:
            conn = await asyncpg.connect(database_url)
            try:
                return [row[0] for row in await conn.fetch(query)]
            finally:
                await conn.close()
        owners = run_async(read())
    return {int(owner.split(":")[1]) for owner in owners}


def broadcast(server: ServerProcess, broadcast_id: int) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/v1/{DEMO.name}/broadcasts/{broadcast_id}", headers=AUTH, timeout=10).json()


def test_a_server_killed_mid_broadcast_leaves_no_one_twice_and_no_one_out(tmp_path: Path, database_url: str,
                                                                           graph: FakeGraph, llm: FakeOpenAI):
    graph.templates[DEMO.waba_id] = [dict(SALUDO)]
    env = environment(database_url, graph, llm)
    keys = [f"54911{n:08d}" for n in range(RECIPIENTS)]
    with ExitStack() as stack:
        servers = []
        for name in "ab":
            port = free_port()
            servers.append(stack.enter_context(server_process(uvicorn_command(port), port, env,
                                                              tmp_path / f"{name}.log")))
        graph.post_statuses([server.url for server in servers], DEMO.waba_id, DEMO.secret)
        for server in servers:
            wait_for(lambda: httpx.get(f"{server.url}/api/v1/{DEMO.name}/templates", headers=AUTH).json(),
                     what="the startup sync")
        created = httpx.post(f"{servers[0].url}/api/v1/{DEMO.name}/broadcasts", headers=AUTH,
                             json={"template": "saludo", "language": "es_AR", "parameters": ["a"],
                                   "audience": {"user_keys": keys}})
        assert created.status_code == 202, created.text
        broadcast_id = created.json()["id"]

        # Mid-run, kill a process that holds recipients now (some claimed and unsent, maybe one sent, unrecorded).
        wait_for(lambda: len(graph.template_sends()) >= RECIPIENTS // 4, timeout=60, what="a quarter sent")
        holders = wait_for(lambda: lease_holders(database_url) & {s.process.pid for s in servers}, timeout=30,
                           interval=0.005, what="a server holding recipients")
        victim = next(server for server in servers if server.process.pid in holders)
        victim.kill()
        sent_when_killed = len(graph.template_sends())
        survivor = next(server for server in servers if server is not victim)

        done = wait_for(lambda: (b := broadcast(survivor, broadcast_id))["status"] == "done" and b, timeout=90,
                        interval=0.1, what="the survivor to finish the broadcast")
        assert sent_when_killed < RECIPIENTS, "premise: the kill came mid-run"
        sends = [call.body["to"] for call in graph.template_sends()]
        duplicates = {key: sends.count(key) for key in set(sends) if sends.count(key) > 1}
        assert duplicates == {} and sorted(set(sends)) == keys  # 0 twice, 0 skipped
        assert done["total"] == RECIPIENTS and done["counts"]["sent"] == RECIPIENTS, done
