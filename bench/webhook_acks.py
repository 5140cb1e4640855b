"""Webhook acknowledgements per second and p99 latency of the real app, as ratios of a bare FastAPI endpoint.

Run: .venv/bin/python -m bench.webhook_acks [--duration 10] [--threads 2] [--connections 32] [--workers 1,3]
                                            [--databases sqlite]

Each server is the Procfile's web command (gunicorn with uvicorn workers) with -w N, bound to 127.0.0.1, gunicorn's
access log off (its default), LOG_LEVEL=WARNING, in sandbox mode (no app secret, no token, ALLOW_UNSIGNED_WEBHOOKS=true: unsigned
deliveries are accepted, replies are logged, not sent). The app runs on a fresh SQLite file, or on a fresh database of a
throwaway PostgreSQL server on 127.0.0.1 (tests/postgres.py: fsync and synchronous_commit off unless
--durable-postgres). Beside each app run, in the same run, the same command serves a bare FastAPI app (generated
into a temp dir: POST /webhook returning 200) under the same load; the ratio app/bare is the headline, since this
machine is shared and noisy.

The load comes from `wrk` (C, its own threads: it does not share Python's GIL with anything), installed with
Debian's apt-get when missing and run as root. Its Lua script makes every body unique: a fresh wamid and a sender
among --users people, so every request is a real insert, not a duplicate. After each app run the inbound messages
stored under that run's wamids are counted in the database and compared with the 2xx responses wrk saw: a message
acknowledged but not stored is lost (goal 0). Requests still in flight when wrk stops may be stored without wrk
counting their answer: those show as `extra`, not as lost.

The app runs as it would in production: conversations come due after the debounce (DEBOUNCE_SECONDS, 3 s unless
--debounce) and are answered (offline replies, no OPENAI_API_KEY) by the same processes while the load goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

import tests.postgres
from tests.postgres import PostgresServer, PostgresUnavailable, run_async
from tests.processes import ROOT, free_port, server_process
from tests.support import text_delivery

CLIENT, WABA_ID, PHONE_NUMBER_ID = "demo", "1001", "2001"
WAMID_PREFIX = "wamid.BENCH"

BARE_APP = '''"""A bare FastAPI app: the ceiling the webhook is measured against."""
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhook")
async def webhook() -> JSONResponse:
    return JSONResponse({"status": "ok", "stored": 1})


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
'''

# Every request: a fresh wamid (run tag, thread, counter) and a sender among USERS; `done` prints one JSON line.
LUA = r'''
local TEMPLATE = [==[%(template)s]==]
local TAG = "%(tag)s"
local USERS = %(users)d
local threads = 0
counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(id * 7919 + %(seed)d)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local wamid = string.format("%(prefix)s.%%s.%%d.%%d", TAG, id, counter)
  local user = string.format("54911%%08d", math.random(0, USERS - 1))
  local body = TEMPLATE:gsub("__WAMID__", wamid):gsub("__USER__", user)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
'''


@dataclass
class Load:
    """What wrk saw in one measurement."""

    requests: int
    duration_us: int
    status_errors: int  # responses with a status above 399
    connect: int
    read: int
    write: int
    timeout: int
    p50_us: int
    p99_us: int

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors  # the app never answers 3xx

    @property
    def per_second(self) -> float:
        return self.ok / (self.duration_us / 1e6)

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@dataclass
class Row:
    database: str
    workers: int
    bare: Load
    app: Load
    stored: int

    @property
    def lost(self) -> int:
        return max(0, self.app.ok - self.stored)

    @property
    def extra(self) -> int:
        return max(0, self.stored - self.app.ok)


def ensure_wrk() -> str:
    """wrk's path; installs Debian's `wrk` as root when missing, else stops saying what to install."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing Debian's `wrk` with apt-get", file=sys.stderr)
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("error: this benchmark needs the HTTP load generator `wrk` (C, so it shares no GIL with the "
                     "server) and could not install it: install Debian's `wrk` (apt-get install -y wrk) or put a "
                     "wrk 4.x on PATH.")


def web_command(app: str, workers: int, port: int) -> list[str]:
    """The Procfile's `web:` command for `app`, with -w N, bound to 127.0.0.1:port, run by this interpreter."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    assert words[0] == "gunicorn" and words[1] == "core.main:app", f"unexpected Procfile web command: {line}"
    return [sys.executable, "-m", "gunicorn", app, *words[2:], "-w", str(workers), "-b", f"127.0.0.1:{port}"]


def write_lua(folder: Path, tag: str, users: int) -> Path:
    delivery = text_delivery(WABA_ID, PHONE_NUMBER_ID, "__USER__", "Hola, ¿cuánto cuesta el curso y cuándo empieza?",
                             wamid="__WAMID__", timestamp=int(time.time()))
    template = json.dumps(delivery, ensure_ascii=False)
    assert "]==]" not in template
    path = folder / f"load-{tag}.lua"
    path.write_text(LUA % {"template": template, "tag": tag, "users": users, "seed": abs(hash(tag)) % 100_000,
                           "prefix": WAMID_PREFIX})
    return path


def run_wrk(wrk: str, url: str, script: Path, args: argparse.Namespace, duration: int) -> Load:
    command = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration}s",
               "--timeout", f"{args.timeout}s", "-s", str(script), url + "/webhook"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=duration + args.timeout + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return Load(**json.loads(lines[-1].removeprefix("WRK_RESULT ")))


def measure(wrk: str, command: list[str], port: int, env: dict[str, str], folder: Path, name: str,
            args: argparse.Namespace) -> tuple[Load, str]:
    """Start the server, warm it up, measure; returns the load and the measurement's wamid tag."""
    with server_process(command, port, env, folder / f"{name}.log") as server:
        if args.warmup > 0:
            run_wrk(wrk, server.url, write_lua(folder, f"{name}-warm", args.users), args, args.warmup)
        tag = f"{name}-run"
        load = run_wrk(wrk, server.url, write_lua(folder, tag, args.users), args, args.duration)
    return load, tag


def stored_sqlite(path: Path, tag: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM messages WHERE direction = 'in' AND wamid LIKE ?",
                          (f"{WAMID_PREFIX}.{tag}.%",)).fetchone()[0]


def stored_postgres(url: str, tag: str) -> int:
    async def count() -> int:
        db = await asyncpg.connect(url)
        try:
            return await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' AND wamid LIKE $1",
                                     f"{WAMID_PREFIX}.{tag}.%")
        finally:
            await db.close()

    return run_async(count())


@contextmanager
def postgres(durable: bool) -> Iterator[PostgresServer]:
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


def bench(database: str, workers: int, wrk: str, folder: Path, pg: PostgresServer | None,
          args: argparse.Namespace) -> Row:
    name = f"{database}-w{workers}"
    port = free_port()
    bare, _ = measure(wrk, web_command("bare_webhook:app", workers, port) + ["--pythonpath", str(folder)], port,
                      {"LOG_LEVEL": "WARNING"}, folder, f"{name}-bare", args)
    if database == "sqlite":
        db_path = folder / f"{name}.db"
        url = f"sqlite:///{db_path}"
    else:
        assert pg is not None
        url = pg.create_database()
    prefix = CLIENT.upper() + "_"
    # wrk's bodies are unsigned: the app must allow that (it refuses to beside a Postgres DATABASE_URL).
    env = {"DATABASE_URL": url, prefix + "WABA_IDS": WABA_ID, prefix + "PHONE_NUMBER_IDS": PHONE_NUMBER_ID,
           "LOG_LEVEL": "WARNING", "ALLOW_UNSIGNED_WEBHOOKS": "true"}
    if args.debounce is not None:
        env |= {"DEBOUNCE_SECONDS": str(args.debounce), "DEBOUNCE_MAX_SECONDS": str(max(args.debounce, 15.0))}
    port = free_port()
    app, tag = measure(wrk, web_command("core.main:app", workers, port), port, env, folder, f"{name}-app", args)
    stored = stored_sqlite(db_path, tag) if database == "sqlite" else stored_postgres(url, tag)
    if pg is not None:
        pg.drop_database(url)
    return Row(database, workers, bare, app, stored)


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nwrk: {args.threads} threads, {args.connections} connections, {args.duration:g} s per measurement "
          f"(after {args.warmup:g} s of warm-up); senders among {args.users}; every body a new wamid")
    header = f"{'database':<10}{'workers':>8}{'bare req/s':>12}{'app req/s':>11}{'ratio':>7}" \
             f"{'app p99 ms':>12}{'bare p99 ms':>13}{'lost':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.database:<10}{row.workers:>8}{row.bare.per_second:>12,.0f}{row.app.per_second:>11,.0f}"
              f"{row.app.per_second / row.bare.per_second:>7.2f}{row.app.p99_us / 1000:>12.1f}"
              f"{row.bare.p99_us / 1000:>13.1f}{row.lost:>6}")
    print()
    for row in rows:
        notes = []
        if row.extra:
            notes.append(f"{row.extra} stored beyond the 2xx wrk counted (in flight when it stopped)")
        for kind, load in (("app", row.app), ("bare", row.bare)):
            if load.status_errors:
                notes.append(f"{kind}: {load.status_errors} responses 4xx/5xx")
            if load.socket_errors:
                notes.append(f"{kind}: socket errors connect {load.connect} read {load.read} write {load.write} "
                             f"timeout {load.timeout}")
        print(f"{row.database} -w{row.workers}: app p50 {row.app.p50_us / 1000:.1f} ms, bare p50 "
              f"{row.bare.p50_us / 1000:.1f} ms; {row.app.ok} acknowledged, {row.stored} stored"
              + (f"; {'; '.join(notes)}" if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each measurement")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (kept alive)")
    parser.add_argument("--timeout", type=int, default=5, help="wrk's request timeout, whole seconds")
    parser.add_argument("--users", type=int, default=1000, help="senders the requests are spread over")
    parser.add_argument("--workers", default="1,3", help="gunicorn worker counts, comma separated")
    parser.add_argument("--databases", default="sqlite", help="sqlite (postgres needs signed bodies: see below)")
    parser.add_argument("--debounce", type=float, default=None,
                        help="DEBOUNCE_SECONDS for the app (default: the app's, 3 s); e.g. 3600 for no replies "
                             "during the measurement")
    parser.add_argument("--durable-postgres", action="store_true",
                        help="PostgreSQL with fsync and synchronous_commit on (the test server has them off)")
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    if not set(databases) <= {"sqlite", "postgres"}:
        parser.error("--databases takes sqlite and/or postgres")
    if "postgres" in databases:
        # wrk's bodies are unsigned, and the app refuses ALLOW_UNSIGNED_WEBHOOKS beside a Postgres DATABASE_URL.
        parser.error("postgres: the app refuses unsigned webhooks beside a Postgres DATABASE_URL, and wrk's bodies are "
                     "not signed yet (issue 10 reworks this benchmark)")
    workers = [int(n) for n in args.workers.split(",")]
    wrk = ensure_wrk()
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-acks-") as tmp:
        folder = Path(tmp)
        (folder / "bare_webhook.py").write_text(BARE_APP)
        for database in databases:
            with (postgres(args.durable_postgres) if database == "postgres" else _nothing()) as pg:
                for count in workers:
                    row = bench(database, count, wrk, folder, pg, args)
                    print(f"{database} -w{count}: bare {row.bare.per_second:,.0f} req/s, "
                          f"app {row.app.per_second:,.0f} req/s", file=sys.stderr)
                    rows.append(row)
    report(rows, args)
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
