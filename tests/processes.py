"""Real server processes for tests: started like production starts them, stopped by signal (or killed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import wait_for

ROOT = Path(__file__).parent.parent
# Variables a developer may have exported that would change what the server under test does.
FOREIGN_PREFIXES = ("DEMO_", "EMPRENDEMY_", "META_", "OPENAI_", "WHATSAPP_", "DATABASE_URL", "DEBOUNCE_", "LEASE_",
                    "PINECONE_", "SCHEDULER_", "MEDIA_", "SUPABASE_", "RUN_SCHEDULER", "SANDBOX_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uvicorn_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "core.main:app", "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a dyno is killed or a machine dies."""
        self.process.kill()
        self.process.wait(timeout=10)


@contextmanager
def server_process(command: list[str], port: int, env: dict[str, str], log_path: Path, *,
                   cwd: Path = ROOT) -> Iterator[ServerProcess]:
    """Run a server in `cwd` until the block ends (SIGTERM, then SIGKILL if it hangs); waits for /health first."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_PREFIXES)}
    log = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=cwd, env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {server.log()[-3000:]}")
        try:
            return httpx.get(server.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, interval=0.05, what="the server to answer /health")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
