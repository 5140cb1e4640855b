"""SIGTERM within Heroku's 30 s: a process stops claiming, lets a running turn finish within SHUTDOWN_GRACE_SECONDS
or hands it back to the store (due at once, not after its lease), and exits; the person is answered exactly once.
Real processes (uvicorn, and `python -m core worker`) on one PostgreSQL database, a stand-in model that is slow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import FOREIGN_PREFIXES, ROOT, free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for

USER = "5491170001234"
LEASE_SECONDS = 60  # a conversation not handed back would wait this long for another process
HEROKU_KILL_SECONDS = 30


def environment(database_url: str, graph: FakeGraph, llm: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {**EMPRENDEMY.env(), "DATABASE_URL": database_url, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.url,
            "WHATSAPP_API_BASE_URL": graph.url, "DEBOUNCE_SECONDS": "0.1", "LEASE_SECONDS": str(LEASE_SECONDS),
            "SCHEDULER_POLL_SECONDS": "0.3", "LOG_LEVEL": "INFO", "OPENAI_TIMEOUT_SECONDS": "120", **extra}


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m core worker` until the block ends; waits for its start line first."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_PREFIXES)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "core", "worker"], cwd=ROOT, env={**clean, **env},
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "worker.started" in log_path.read_text(errors="replace") or process.poll() is not None,
                     timeout=30, what="the worker to start")
            assert process.poll() is None, log_path.read_text(errors="replace")
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def deliver(url: str, text: str) -> None:
    raw, headers = signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, USER, text), EMPRENDEMY.secret)
    assert httpx.post(url + "/webhook", content=raw, headers=headers, timeout=10).status_code == 200


def stop(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM, as Heroku sends it; the seconds until the process exited (killed at Heroku's 30 s)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=HEROKU_KILL_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    return time.monotonic() - started


def clean_exit(process: subprocess.Popen[bytes], log_path: Path) -> bool:
    """Exited after its shutdown ran: uvicorn re-raises the SIGTERM it handled once done (-15), the worker exits 0."""
    log = log_path.read_text(errors="replace")
    assert process.returncode in (0, -signal.SIGTERM), log
    assert "Traceback" not in log, log
    return "services.stopping" in log


def replies(graph: FakeGraph) -> list[str]:
    return [call.text for call in graph.texts() if call.body.get("to") == USER]


def answered_once(url: str, graph: FakeGraph) -> None:
    assert replies(graph) == ["echo: hola"]
    auth = {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}
    api = f"{url}/api/v1/{EMPRENDEMY.name}/conversations"
    [conversation] = httpx.get(api, headers=auth).json()
    messages = httpx.get(f"{api}/{conversation['id']}/messages", headers=auth).json()
    assert [(m["direction"], m["text"], m["status"]) for m in messages if m["direction"] != "internal"] == \
        [("in", "hola", None), ("out", "echo: hola", "sent")]


@pytest.mark.parametrize("kind", ["web", "worker"])
def test_a_turn_slower_than_the_grace_is_handed_back_and_answered_once_by_another_process(
        tmp_path: Path, postgres_url: str, graph: FakeGraph, llm: FakeOpenAI, kind: str):
    llm.gate.clear()  # the model "thinks" until the test lets it answer
    env = environment(postgres_url, graph, llm)
    with ExitStack() as stack:
        if kind == "web":
            port = free_port()
            first = stack.enter_context(server_process(uvicorn_command(port), port,
                                                       {**env, "SHUTDOWN_GRACE_SECONDS": "1"}, tmp_path / "a.log"))
            doomed, entry = first.process, first.url
        else:  # a web process that only takes webhooks in, and workers that answer
            port = free_port()
            entry = stack.enter_context(server_process(uvicorn_command(port), port, {**env, "RUN_SCHEDULER": "false"},
                                                       tmp_path / "web.log")).url
            doomed = stack.enter_context(worker_process({**env, "SHUTDOWN_GRACE_SECONDS": "1"}, tmp_path / "a.log"))
        deliver(entry, "hola")
        wait_for(lambda: len(llm.requests) == 1, timeout=20, what="the turn to reach the model")
        # The survivor starts while the turn is in flight: the conversation is leased, so only a hand-back lets it in.
        if kind == "web":
            port = free_port()
            entry = stack.enter_context(server_process(uvicorn_command(port), port, env, tmp_path / "b.log")).url
        else:
            stack.enter_context(worker_process(env, tmp_path / "b.log"))

        took = stop(doomed)
        assert clean_exit(doomed, tmp_path / "a.log")
        assert took < 10, f"exited {took:.1f} s after SIGTERM"  # 1 s of grace, then release and close
        handed_back = time.monotonic()
        wait_for(lambda: len(llm.requests) == 2, timeout=15, what="the other process to take the turn at once")
        assert time.monotonic() - handed_back < LEASE_SECONDS / 2  # not waiting out the lease
        llm.gate.set()
        wait_for(lambda: replies(graph), timeout=20, what="the reply")
        wait_for(lambda: all_settled(entry), timeout=20, what="the conversation to settle")
        answered_once(entry, graph)
        assert "conversation.handed_back" in (tmp_path / "a.log").read_text()


def test_a_turn_within_the_grace_is_finished_by_the_stopping_process(tmp_path: Path, postgres_url: str,
                                                                     graph: FakeGraph, llm: FakeOpenAI):
    llm.gate.clear()
    port = free_port()
    env = environment(postgres_url, graph, llm, SHUTDOWN_GRACE_SECONDS="15")
    with server_process(uvicorn_command(port), port, env, tmp_path / "a.log") as server:
        deliver(server.url, "hola")
        wait_for(lambda: len(llm.requests) == 1, timeout=20, what="the turn to reach the model")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # Stopping: no new claims and not ready, while the turn runs on.
        wait_for(lambda: "services.stopping" in server.log(), timeout=10, what="the shutdown to begin")
        llm.gate.set()  # the model answers within the grace
        server.process.wait(timeout=HEROKU_KILL_SECONDS)
        took = time.monotonic() - started
        assert clean_exit(server.process, server.log_path)
        assert took < 15
    assert replies(graph) == ["echo: hola"]
    assert len(llm.requests) == 1
    # Another process finds it answered: nothing due, one reply stored as sent.
    port = free_port()
    with server_process(uvicorn_command(port), port, {**env, "RUN_SCHEDULER": "false"}, tmp_path / "b.log") as after:
        assert all_settled(after.url)
        answered_once(after.url, graph)


def all_settled(url: str) -> bool:
    auth = {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}
    conversations = httpx.get(f"{url}/api/v1/{EMPRENDEMY.name}/conversations", headers=auth).json()
    return bool(conversations) and all(c["due_at"] is None for c in conversations)
