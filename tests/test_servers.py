"""The app as production and laptops start it: the Procfile's gunicorn command and plain uvicorn."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO
from tests.support import text_delivery, wait_for

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_web() -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    return shlex.split(line.removeprefix("web:"))


@contextmanager
def running(command: list[str], port: int, tmp_path: Path) -> Iterator[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "EMPRENDEMY_", "META_", "OPENAI_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}", "DEBOUNCE_SECONDS": "0.2",
                "DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key})
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, interval=0.1, what="the server to answer /health")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            # uvicorn re-raises the signal after a clean shutdown, so -SIGTERM counts as a clean exit too.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            assert "Application shutdown complete" in (tmp_path / "server.log").read_text()
        finally:
            process.kill()
            log.close()


def answered(url: str, wa_id: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {DEMO.api_key}"}
    conversations = httpx.get(f"{url}/api/v1/demo/conversations", headers=headers).json()
    mine = [c for c in conversations if c["user_key"] == wa_id]
    if not mine:
        return []
    messages = httpx.get(f"{url}/api/v1/demo/conversations/{mine[0]['id']}/messages", headers=headers).json()
    return [m for m in messages if m["direction"] == "out"]


@pytest.mark.parametrize("server", ["procfile-gunicorn", "uvicorn"])
def test_server_answers_a_webhook_and_stops_cleanly(server: str, tmp_path: Path):
    port = free_port()
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "core.main:app", "--host", "127.0.0.1", "--port", str(port)]
    else:
        gunicorn = procfile_web()
        assert gunicorn[:2] == ["gunicorn", "core.main:app"]
        command = [sys.executable, "-m", *gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    with running(command, port, tmp_path) as url:
        delivery = text_delivery("1", DEMO.phone_number_id, "5491155550020", "hola")
        assert httpx.post(url + "/webhook", json=delivery).status_code == 200
        [reply] = wait_for(lambda: answered(url, "5491155550020"), timeout=20, what="the sandbox reply")
        assert reply["status"] == "sandbox"


def test_bad_configuration_stops_the_server_with_the_variable_named(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "EMPRENDEMY_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DEMO_PHONE_NUMBER_IDS": "12,abc"})
    command = [sys.executable, "-m", "uvicorn", "core.main:app", "--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert "configuration error" in result.stderr
    assert "DEMO_PHONE_NUMBER_IDS: 'abc' is not a numeric Meta id" in result.stderr
