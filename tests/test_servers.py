"""The app as production and laptops start it: the Procfile's gunicorn command and plain uvicorn."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO
from tests.processes import ROOT, free_port, server_process, uvicorn_command
from tests.support import text_delivery, wait_for


def procfile_web() -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    return shlex.split(line.removeprefix("web:"))


SANDBOX_ENV = {"DEBOUNCE_SECONDS": "0.2", "DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key,
               "ALLOW_UNSIGNED_WEBHOOKS": "true"}


def answered(url: str, wa_id: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {DEMO.api_key}"}
    conversations = httpx.get(f"{url}/api/v1/demo/conversations", headers=headers).json()
    mine = [c for c in conversations if c["user_key"] == wa_id]
    if not mine:
        return []
    messages = httpx.get(f"{url}/api/v1/demo/conversations/{mine[0]['id']}/messages", headers=headers).json()
    replies = [m for m in messages if m["direction"] == "out"]
    return replies if all(m["status"] != "pending" for m in replies) else []  # stored pending, then sent


@pytest.mark.parametrize("server", ["procfile-gunicorn", "uvicorn"])
def test_server_answers_a_webhook_and_stops_cleanly(server: str, tmp_path: Path):
    port = free_port()
    if server == "uvicorn":
        command = uvicorn_command(port)
    else:
        gunicorn = procfile_web()
        assert gunicorn[:2] == ["gunicorn", "core.main:app"]
        command = [sys.executable, "-m", *gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    env = {**SANDBOX_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}"}
    with server_process(command, port, env, tmp_path / "server.log") as server:
        url = server.url
        delivery = text_delivery("1", DEMO.phone_number_id, "5491155550020", "hola")
        assert httpx.post(url + "/webhook", json=delivery).status_code == 200
        [reply] = wait_for(lambda: answered(url, "5491155550020"), timeout=20, what="the sandbox reply")
        assert reply["status"] == "sandbox"
    # uvicorn re-raises the signal after a clean shutdown, so -SIGTERM counts as a clean exit too.
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()


def test_bad_configuration_stops_the_server_with_the_variable_named(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "EMPRENDEMY_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DEMO_PHONE_NUMBER_IDS": "12,abc"})
    result = subprocess.run(uvicorn_command(free_port()), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert "configuration error" in result.stderr
    assert "DEMO_PHONE_NUMBER_IDS: 'abc' is not a numeric Meta id" in result.stderr
