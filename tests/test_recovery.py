"""A processor that dies mid-batch: another process answers the batch, exactly once, after the lease expires."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import DEMO
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for


def test_a_processor_killed_mid_batch_is_recovered_by_another_with_one_reply(tmp_path: Path, graph: FakeGraph,
                                                                            llm: FakeOpenAI):
    env = {**DEMO.env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}", "OPENAI_API_KEY": "sk-test",
           "OPENAI_BASE_URL": llm.url, "WHATSAPP_API_BASE_URL": graph.url, "DEBOUNCE_SECONDS": "0.1",
           "LEASE_SECONDS": "2", "SCHEDULER_POLL_SECONDS": "0.2", "LLM_RETRY_ATTEMPTS": "1"}
    llm.gate.clear()  # the model "thinks" until the first process is dead
    port_a = free_port()
    with server_process(uvicorn_command(port_a), port_a, env, tmp_path / "a.log") as first:
        raw, headers = signed(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550040", "hola"), DEMO.secret)
        assert httpx.post(first.url + "/webhook", content=raw, headers=headers).status_code == 200
        wait_for(lambda: len(llm.requests) == 1, what="the first process to ask the model")
        first.kill()
    llm.gate.set()

    port_b = free_port()
    with server_process(uvicorn_command(port_b), port_b, env, tmp_path / "b.log") as second:
        [reply] = wait_for(graph.texts, timeout=20, what="the second process to answer")
        auth = {"Authorization": f"Bearer {DEMO.api_key}"}

        def settled() -> list[dict]:
            [conversation] = httpx.get(f"{second.url}/api/v1/demo/conversations", headers=auth).json()
            return [conversation] if conversation["due_at"] is None else []

        [conversation] = wait_for(settled, what="the conversation to settle")
        messages = httpx.get(f"{second.url}/api/v1/demo/conversations/{conversation['id']}/messages", headers=auth).json()

    assert reply.text == "echo: hola"
    assert len(graph.texts()) == 1
    assert [(m["role"], m["text"]) for m in messages] == [("user", "hola"), ("assistant", "echo: hola")]
    assert len(llm.requests) == 2
