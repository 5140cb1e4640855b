"""The Procfile's worker process answers conversations while web processes only take webhooks in."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import FOREIGN_PREFIXES, ROOT, free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for


def procfile(process: str) -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith(f"{process}:"))
    command = shlex.split(line.removeprefix(f"{process}:"))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_web_with_run_scheduler_false_and_a_worker_answer_together(tmp_path: Path, postgres_url: str,
                                                                   graph: FakeGraph, llm: FakeOpenAI):
    env = {**EMPRENDEMY.env(), "DATABASE_URL": postgres_url, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.url,
           "WHATSAPP_API_BASE_URL": graph.url, "DEBOUNCE_SECONDS": "0.2", "SCHEDULER_POLL_SECONDS": "0.2"}
    clean = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_PREFIXES)}
    port = free_port()
    with server_process(uvicorn_command(port), port, {**env, "RUN_SCHEDULER": "false"}, tmp_path / "web.log") as web:
        raw, headers = signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550070", "hola"),
                              EMPRENDEMY.secret)
        assert httpx.post(web.url + "/webhook", content=raw, headers=headers).status_code == 200
        wait_for(lambda: "scheduler.disabled" in web.log(), what="the web process to say it does not answer")

        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen(procfile("worker"), cwd=ROOT, env={**clean, **env}, stdout=log,
                                      stderr=subprocess.STDOUT)
            try:
                [reply] = wait_for(graph.texts, timeout=20, what="the worker to answer")
                assert reply.text == "echo: hola"
                assert reply.phone_number_id == EMPRENDEMY.phone_number_id
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=30) == 0
    worker_log = (tmp_path / "worker.log").read_text()
    assert "worker.started" in worker_log and "conversation.replied" in worker_log and "worker.stopping" in worker_log
    assert "conversation.replied" not in web.log()
