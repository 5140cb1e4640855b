"""What the benchmarks run and measure: the Procfile's web command, the bare endpoint, a throwaway PostgreSQL,
the CPU time of a server's processes."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tests.postgres
from tests.postgres import PostgresServer, PostgresUnavailable
from tests.processes import ROOT

# The ceiling the webhook is measured against. It reads the body, as any endpoint that verifies a signature must.
BARE_APP = '''"""A bare FastAPI app: the ceiling the webhook is measured against."""
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhook")
async def webhook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "ok", "stored": 1})


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
'''

BARE_MODULE = "bare_webhook"


def write_bare_app(folder: Path) -> list[str]:
    """Write the bare app into `folder`; returns the gunicorn arguments that serve it from there."""
    (folder / f"{BARE_MODULE}.py").write_text(BARE_APP)
    return [f"{BARE_MODULE}:app", "--pythonpath", str(folder)]


def web_command(app: str, workers: int, port: int, extra: list[str] | None = None) -> list[str]:
    """The Procfile's `web:` command for `app`, with -w N, bound to 127.0.0.1:port, run by this interpreter."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    assert words[0] == "gunicorn" and words[1] == "core.main:app", f"unexpected Procfile web command: {line}"
    return [sys.executable, "-m", "gunicorn", app, *(extra or []), *words[2:], "-w", str(workers),
            "-b", f"127.0.0.1:{port}"]


@contextmanager
def postgres(durable: bool = False) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (tests/postgres.py); `durable` turns fsync and synchronous_commit on."""
    if durable:  # as a real server commits: each commit waits for its WAL to reach the disk
        tests.postgres.SERVER_SETTINGS.update({"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"})
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as error:
        raise SystemExit(f"error: {error}") from None
    try:
        yield server
    finally:
        server.stop()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a gunicorn master and its workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:  # the task ended meanwhile
                pass
    return found


def cpu_seconds(pid: int) -> dict[int, float]:
    """User plus system CPU seconds used so far by `pid` and each of its descendants, from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for each in process_tree(pid):
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, utime 14, stime 15
        used[each] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes alive at the second (new ones count in full)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
