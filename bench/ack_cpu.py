"""CPU of the webhook acknowledgement path outside the store, as a ratio of a bare FastAPI endpoint's.

Run: .venv/bin/python -m bench.ack_cpu [--requests 2000] [--rounds 5] [--log-level INFO] [--profile 20]
     .venv/bin/python -m bench.ack_cpu --serve [--duration 5] [--connections 64] [--log-level INFO] [--py-spy 20]

The app is the real one (create_app, the demo client live, deliveries signed with its app secret), but its store
answers at once (InstantStore below: nothing is written) and its scheduler is not running, so what is timed is the
acknowledgement path the store does not own: body read, signature, JSON, pydantic, events, routing, logging, and
FastAPI/Starlette around them. The bare app's POST /webhook reads the body and answers the same JSON.

In-process (default): both apps are called as ASGI apps on one event loop, no server and no sockets; rounds
alternate bare and app, each timing --requests deliveries of each kind (a text message, a status) in process CPU
time. The ratio is bare time / app time per request: the share of the bare endpoint's throughput the app would
reach if the ASGI app were all the server did (it is not: uvicorn's own cost per request is the same for both and
moves the served ratio towards 1).

--serve: each app is served by one uvicorn process (access log off), loaded by `wrk` from 127.0.0.1 with signed
bodies (a pool of distinct wamids), alternating bare and app; the ratio is app req/s / bare req/s, the figure of
issue 10's goal with the store's cost taken out (its ceiling). --py-spy N samples the app server while it is
loaded and prints the N functions with most samples of their own, and the N with most in total.

With --log-level INFO (the default of LOG_LEVEL) the log lines are formatted and written to /dev/null in process,
to the server's stderr (a file) with --serve: what a line costs is in the figures, as it is in production.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.app import create_app
from core.clients import discover, load_registry
from core.clock import SystemClock
from core.config import Settings, load_settings
from core.metrics import Metrics
from core.services import Services
from core.storage.records import Debounce, InboundResult
from core.webhook.events import InboundMessage, StatusUpdate
from core.webhook.signature import sign
from tests.processes import ROOT, free_port
from tests.support import load_delivery, text_delivery

CLIENT, WABA_ID, PHONE_NUMBER_ID, SECRET = "demo", "1001", "2001", "bench-secret"
ENV = {"DEMO_WABA_IDS": WABA_ID, "DEMO_PHONE_NUMBER_IDS": PHONE_NUMBER_ID, "DEMO_ACCESS_TOKEN": "bench-token",
       "DEMO_APP_SECRET": SECRET, "DATABASE_URL": "sqlite:///bench-ack-cpu-unused.db"}
KINDS = ("message", "status")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class InstantStore:
    """A store double for the two calls the acknowledgement makes: it answers at once and keeps nothing."""

    def __init__(self) -> None:
        self.inbound = 0
        self.statuses = 0

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce,
                             now: datetime) -> InboundResult:
        self.inbound += 1
        return InboundResult(conversation_id=1, is_new=True, due_at=now + timedelta(seconds=debounce.seconds))

    async def record_status(self, client: str, update: StatusUpdate, now: datetime) -> bool:
        self.statuses += 1
        return True


class IdleScheduler:
    """The scheduler's one method the webhook calls; nothing runs."""

    def nudge(self, due_at: datetime | None = None) -> None:
        return None


def instant_services(settings: Settings) -> Services:
    """The app's services with the instant store; senders and outbox are never reached by the webhook. The metrics
    are real (each acknowledgement counts and times itself, as in production); BENCH_NO_METRICS=1 leaves them out."""
    registry = load_registry(discover(settings.clients_package), settings, None)
    metrics = None if os.environ.get("BENCH_NO_METRICS") else Metrics()
    for client in registry if metrics is not None else ():
        metrics.client(client.name)
    return Services(settings, registry, SystemClock(), cast(Any, InstantStore()), cast(Any, IdleScheduler()),
                    cast(Any, None), cast(Any, None), metrics=metrics)


def bench_settings(log_level: str) -> Settings:
    os.environ.update({**ENV, "LOG_LEVEL": log_level})
    return load_settings(_env_file=None)


def served_app() -> FastAPI:
    """uvicorn --factory: the real app whose lifespan hands out the instant services instead of opening a store."""
    settings = load_settings(_env_file=None)
    app = create_app(settings, env_file=None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        yield {"services": instant_services(settings), "warnings": []}

    app.router.lifespan_context = lifespan
    return app


def bare_app() -> FastAPI:
    """uvicorn --factory: the ceiling, a FastAPI endpoint that reads the body and answers."""
    app = FastAPI()

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "ok", "stored": 1})

    return app


def deliveries(kind: str, count: int) -> list[tuple[bytes, str]]:
    """`count` distinct signed bodies of one kind: a text message each (its own wamid), or a status report.

    Written as Meta writes them: non-ASCII as \\uXXXX escapes, an emoji as an escaped surrogate pair."""
    made = []
    for n in range(count):
        if kind == "message":
            document = text_delivery(WABA_ID, PHONE_NUMBER_ID, f"549115555{n % 1000:04d}", "hola 👋 ¿tienen turnos?",
                                     wamid=f"wamid.ACKCPU{n:08d}")
        else:
            document = load_delivery("status_delivered.json", WABA_ID, PHONE_NUMBER_ID)
            document["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = f"wamid.ACKCPU{n:08d}"
        body = json.dumps(document).encode()
        made.append((body, sign(SECRET, body)))
    return made


ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


async def call(app: ASGIApp, state: dict[str, Any], body: bytes, signature: str) -> int:
    """One POST /webhook through the ASGI app, as uvicorn would call it; the response status."""
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/webhook", "raw_path": b"/webhook", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"x-hub-signature-256", signature.encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": dict(state),
    }
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def time_calls(app: ASGIApp, state: dict[str, Any], bodies: list[tuple[bytes, str]]) -> float:
    """Process CPU seconds per delivery over `bodies`; every answer must be a 200."""
    started = time.process_time()
    for body, signature in bodies:
        status = await call(app, state, body, signature)
        if status != 200:
            raise SystemExit(f"the app answered {status}: the bench deliveries must be acknowledged")
    return (time.process_time() - started) / len(bodies)


@dataclass
class Timings:
    bare: list[float]
    app: list[float]

    def ratio(self) -> float:
        return statistics.median(self.bare) / statistics.median(self.app)


async def in_process(args: argparse.Namespace) -> None:
    settings = bench_settings(args.log_level)
    app = create_app(settings, env_file=None)
    quiet_log_handlers()
    services = instant_services(settings)
    state = {"services": services, "warnings": []}
    bare = bare_app()
    bodies = {kind: deliveries(kind, args.requests) for kind in KINDS}
    for kind in KINDS:  # warm-up: imports, pydantic's first validations, caches
        await time_calls(app, state, bodies[kind][:200])
        await time_calls(bare, {}, bodies[kind][:200])
    timings = {kind: Timings([], []) for kind in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            timings[kind].bare.append(await time_calls(bare, {}, bodies[kind]))
            timings[kind].app.append(await time_calls(app, state, bodies[kind]))
    print(f"in process, ASGI only, LOG_LEVEL={args.log_level}, {args.rounds} rounds of {args.requests} deliveries "
          f"each (median CPU per delivery)")
    print(f"{'delivery':<10}{'bare µs':>9}{'app µs':>9}{'ratio bare/app':>16}")
    for kind in KINDS:
        t = timings[kind]
        print(f"{kind:<10}{statistics.median(t.bare) * 1e6:>9.1f}{statistics.median(t.app) * 1e6:>9.1f}"
              f"{t.ratio():>16.2f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for kind in KINDS:
            await time_calls(app, state, bodies[kind])
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        print(f"\ncProfile of the app over {args.requests} deliveries of each kind, by own time:")
        stats.sort_stats("tottime").print_stats(args.profile)


def quiet_log_handlers() -> None:
    """The app's log lines still formatted and written, but to /dev/null rather than over the report."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the bench


# --serve ---------------------------------------------------------------------------------------------------------

LUA = r'''
local bodies = {%(bodies)s}
local signatures = {%(signatures)s}
local n = 0

request = function()
  n = n %% #bodies + 1
  return wrk.format("POST", "/webhook", {["Content-Type"] = "application/json",
                                         ["X-Hub-Signature-256"] = signatures[n]}, bodies[n])
end

done = function(summary, latency, requests)
  io.write(string.format('{"requests": %%d, "duration_us": %%d, "non2xx": %%d, "socket_errors": %%d, ' ..
                         '"p50_us": %%d, "p99_us": %%d}\n', summary.requests, summary.duration,
                         summary.errors.status, summary.errors.connect + summary.errors.read +
                         summary.errors.write + summary.errors.timeout,
                         latency:percentile(50), latency:percentile(99)))
end
'''


@dataclass(frozen=True)
class Load:
    requests: int
    duration_us: int
    non2xx: int
    socket_errors: int
    p50_us: int
    p99_us: int

    @property
    def per_second(self) -> float:
        return (self.requests - self.non2xx) / (self.duration_us / 1e6)


def write_lua(folder: Path, kind: str, count: int) -> Path:
    made = deliveries(kind, count)
    script = folder / f"{kind}.lua"
    script.write_text(LUA % {"bodies": ",".join(f"[==[{body.decode()}]==]" for body, _ in made),
                             "signatures": ",".join(f'"{signature}"' for _, signature in made)})
    return script


def start_server(factory: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{factory} exited: {log.read_text()[-2000:]}")
        probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True)
        if probe.stdout.strip() not in ("", "000"):
            return server
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"{factory} did not start in 30 s")


def run_wrk(port: int, script: Path, args: argparse.Namespace, duration: int) -> Load:
    done = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration}s",
                           "--latency", "-s", str(script), f"http://127.0.0.1:{port}/webhook"],
                          capture_output=True, text=True, check=True)
    return Load(**json.loads(done.stdout.strip().splitlines()[-1]))


def measure(factory: str, script: Path, args: argparse.Namespace, env: dict[str, str], folder: Path,
            spy: Path | None = None) -> Load:
    port = free_port()
    server = start_server(factory, port, env, folder / f"{factory.rsplit(':', 1)[1]}.log")
    try:
        run_wrk(port, script, args, 1)  # warm-up
        sampler = None
        if spy is not None:
            sampler = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                                        "record", "--format", "raw", "-r", "250", "-d",
                                        str(args.duration), "-o", str(spy), "-p", str(server.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = run_wrk(port, script, args, args.duration)
        if sampler is not None:
            sampler.wait(timeout=60)
        return load
    finally:
        server.terminate()
        server.wait(timeout=30)


def function_of(frame: str) -> str:
    """`Logger.info (logging/__init__.py:1489)` as `Logger.info logging/__init__.py`: a function's samples together."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.rsplit(':', 1)[0]}"


def top_frames(collapsed: Path, count: int) -> None:
    """The functions with most samples of their own, then the project's (core/) with most samples in total."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        frames = [function_of(frame) for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        print("py-spy took no samples (is ptrace allowed?)")
        return
    print(f"\npy-spy, app server, top {count} by own samples of {total}:")
    for frame, n in own.most_common(count):
        print(f"{n / total:>7.1%}  {frame}")
    # Inclusive counts of the server's and framework's wrappers say nothing; the project's own functions do.
    print(f"\npy-spy, app server, top {count} functions of core/ by samples in total (inclusive) of {total}:")
    for frame, n in [(f, n) for f, n in anywhere.most_common() if " core/" in f][:count]:
        print(f"{n / total:>7.1%}  {frame}")


def served(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("--serve needs wrk (apt-get install wrk)")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "EMPRENDEMY_", "META_"))}
    env.update({**ENV, "LOG_LEVEL": args.log_level, "PYTHONPATH": str(ROOT)})
    with tempfile.TemporaryDirectory(prefix="ack-cpu-") as name:
        folder = Path(name)
        rows = []
        for kind in args.kinds:
            script = write_lua(folder, kind, 1000)
            loads: dict[str, list[Load]] = {"bare": [], "app": []}
            for round_ in range(args.rounds):
                loads["bare"].append(measure("bench.ack_cpu:bare_app", script, args, env, folder))
                last = round_ == args.rounds - 1 and kind == "message"
                spy = folder / "app.spy" if args.py_spy and last else None
                loads["app"].append(measure("bench.ack_cpu:served_app", script, args, env, folder, spy))
                if spy is not None:
                    top_frames(spy, args.py_spy) if spy.exists() else print("py-spy wrote nothing")
            rows.append((kind, loads))
        print(f"\none uvicorn worker each, instant store, LOG_LEVEL={args.log_level}, wrk {args.threads} threads "
              f"{args.connections} connections {args.duration} s, {args.rounds} alternating rounds (median)")
        print(f"{'delivery':<10}{'bare req/s':>12}{'app req/s':>11}{'ratio':>7}{'app p99 ms':>12}{'bare p99 ms':>13}"
              f"{'non-2xx':>9}")
        for kind, loads in rows:
            bare = statistics.median(load.per_second for load in loads["bare"])
            app = statistics.median(load.per_second for load in loads["app"])
            p99_app = statistics.median(load.p99_us for load in loads["app"]) / 1000
            p99_bare = statistics.median(load.p99_us for load in loads["bare"]) / 1000
            bad = sum(load.non2xx + load.socket_errors for load in loads["app"])
            print(f"{kind:<10}{bare:>12,.0f}{app:>11,.0f}{app / bare:>7.2f}{p99_app:>12.1f}{p99_bare:>13.1f}{bad:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="uvicorn + wrk instead of in-process ASGI calls")
    parser.add_argument("--requests", type=int, default=2000, help="deliveries per kind per round (in process)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/app rounds")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--profile", type=int, default=0, help="print the top N of a cProfile run (in process)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per server (--serve)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--kinds", type=lambda text: text.split(","), default=list(KINDS),
                        help="deliveries to send, of message,status (--serve)")
    parser.add_argument("--py-spy", type=int, default=0, help="sample the app server, print the top N (--serve)")
    args = parser.parse_args()
    if args.serve:
        served(args)
    else:
        asyncio.run(in_process(args))


if __name__ == "__main__":
    main()
