"""The foundation's end-to-end scenarios, unchanged, against the Procfile's gunicorn with 3 workers on PostgreSQL."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tests.test_end_to_end as scenarios
from core.clock import SystemClock
from core.config import Settings
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import ROOT, free_port, server_process

# Every scenario of tests/test_end_to_end.py, collected here again: this module's live_app is gunicorn -w 3.
globals().update({name: test for name, test in vars(scenarios).items() if name.startswith("test_")})


def procfile_web(port: int, workers: int) -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    command = shlex.split(line.removeprefix("web:"))
    return [sys.executable, "-m", *command, "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]


@pytest.fixture
def live_app(tmp_path: Path, postgres_url: str, graph: FakeGraph, llm: FakeOpenAI) -> Iterator[RunningApp]:
    env = {**DEMO.env(), **EMPRENDEMY.env(), "DATABASE_URL": postgres_url, "OPENAI_API_KEY": "sk-test",
           "OPENAI_BASE_URL": llm.url, "WHATSAPP_API_BASE_URL": graph.url, "DEBOUNCE_SECONDS": "0.3",
           "SCHEDULER_POLL_SECONDS": "0.5", "MEDIA_ARCHIVE_DIR": str(tmp_path / "media")}
    port = free_port()
    with server_process(procfile_web(port, 3), port, env, tmp_path / "gunicorn.log") as server, \
            httpx.Client(timeout=10) as http:
        yield RunningApp(server.url, http, Settings(_env_file=None, database_url=postgres_url), SystemClock())
    assert "Booting worker" in server.log()
