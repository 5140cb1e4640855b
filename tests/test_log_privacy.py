"""A conversation driven through a real server at INFO leaves no message body and no phone number in its log, in
either LOG_FORMAT; with json every line is one object carrying the same fields as the text line."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for

PHONE = "5491187654321"
NAME = "Rocío Privada"
BODY = "mi dni es 30111222 y vivo en Calle Falsa 123"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_conversation_at_info_logs_no_body_and_no_phone_number(tmp_path: Path, graph: FakeGraph, llm: FakeOpenAI,
                                                                 log_format: str):
    port = free_port()
    env = {**EMPRENDEMY.env(), "DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "OPENAI_API_KEY": "sk-test",
           "OPENAI_BASE_URL": llm.url, "WHATSAPP_API_BASE_URL": graph.url, "LOG_LEVEL": "INFO",
           "LOG_FORMAT": log_format, "DEBOUNCE_SECONDS": "0.2", "SCHEDULER_POLL_SECONDS": "0.3",
           "MEDIA_ARCHIVE_DIR": str(tmp_path / "media")}
    graph.fail_next(400, 131026, "undeliverable", to=PHONE)  # a refusal is logged at ERROR: still nothing personal
    with server_process(uvicorn_command(port), port, env, tmp_path / "server.log") as server:
        for text in (BODY, "y mi teléfono es +54 9 11 8765-4321"):
            raw, headers = signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, PHONE, text,
                                                name=NAME), EMPRENDEMY.secret)
            assert httpx.post(server.url + "/webhook", content=raw, headers=headers).status_code == 200
        wait_for(lambda: graph.texts(), timeout=20, what="the reply to be attempted")
        graph_calls = len(graph.calls)
        # A second turn that is answered: both the refused and the sent reply went through the log's paths.
        raw, headers = signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, PHONE, "gracias",
                                            name=NAME), EMPRENDEMY.secret)
        assert httpx.post(server.url + "/webhook", content=raw, headers=headers).status_code == 200
        wait_for(lambda: len(graph.texts()) >= 2, timeout=20, what="the second reply")
        assert len(graph.calls) > graph_calls
        wait_for(lambda: "conversation.replied" in server.log(), timeout=10, what="the reply to be logged")
    log = server.log()
    lines = [line for line in log.splitlines() if line.strip()]
    assert any("conversation.replied" in line for line in lines) and any("send_refused" in line for line in lines)
    for secret in (PHONE, "8765-4321", "30111222", "Calle Falsa", "Rocío", "Privada", "gracias", "echo:"):
        assert [line for line in lines if secret in line] == [], secret
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line, the server's own included, is one object
        replied = next(record for record in records if record["event"] == "conversation.replied")
        assert replied["client"] == EMPRENDEMY.name and isinstance(replied["conversation"], int)
        assert {"time", "level", "logger"} <= set(replied)
    else:
        assert any(f"conversation.replied client={EMPRENDEMY.name} conversation=" in line for line in lines)
