"""Server CPU per turn: how many milliseconds of CPU the process that answers spends on one turn.

Run: .venv/bin/python -m bench.turn_cpu [--users 100] [--rounds 5] [--baseline main] [--profile DIR]

Three kinds of process, so that only the answering one is measured:
- the stand-ins (Graph API and OpenAI, tests/fakes) in one process of their own;
- the web server (uvicorn, RUN_SCHEDULER=false) that stores the deliveries this harness posts;
- the worker (`python -m core worker`, default settings, LOG_LEVEL=INFO as in production) that answers them.
The worker's CPU time (utime + stime from /proc) is read once it is idle and again when every reply reached the
Graph stand-in; divided by the turns, that is CPU ms per turn. Each user writes one message per round and the next
round starts when every reply is in, so later turns carry a history, as real conversations do. With --tool-calls
every turn makes one tool round (the emprendemy catalogue) before answering.

With --baseline REF the same measurement runs on `git archive REF` (exported to a temporary folder) and on this
working tree, alternately, and the ratio current/baseline is reported per pair and as the median: this machine is
shared and noisy, so only figures from the same run are compared. --profile DIR records the worker of each tree
with py-spy (one speedscope file per tree, from the last pair; only samples holding the GIL, so threads waiting on a
queue or a socket are left out) and prints its busiest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import EMPRENDEMY
from tests.processes import FOREIGN_PREFIXES, ROOT, free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- the stand-ins' process ---------------------------------------------------------------------------------------

def run_stand_ins(graph_port: int, llm_port: int, latency: float, tool_calls: bool) -> None:
    """Serve the Graph and OpenAI stand-ins until killed; GET /_bench/texts on the Graph one counts replies."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from tests.fakes.graph import FakeGraph
    from tests.fakes.openai import FakeOpenAI, Reply, echo

    def respond(body: dict[str, Any]) -> Reply:
        # One tool round per turn: a tool call after the user's message, the answer after the tool's result.
        if tool_calls and body["messages"][-1]["role"] == "user":
            return Reply(tool_calls=[("list_courses", {})])
        return echo(body)

    graph, llm = FakeGraph(), FakeOpenAI(respond)
    llm.latency_seconds = latency

    async def texts(request: Request) -> JSONResponse:
        count = len(graph.texts())
        graph.calls.clear()  # the stand-ins run for hours of rounds: keep memory flat
        llm.requests.clear()
        return JSONResponse({"texts": count})

    graph_app = Starlette(routes=[Route("/_bench/texts", texts), Mount("/", graph.app)])

    async def serve() -> None:
        servers = [uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                 access_log=False))
                   for app, port in ((graph_app, graph_port), (llm.app, llm_port))]
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(serve())


@contextmanager
def stand_ins(latency: float, tool_calls: bool) -> Iterator[tuple[str, str]]:
    """The stand-ins in a process of their own; yields (graph URL, OpenAI base URL)."""
    graph_port, llm_port = free_port(), free_port()
    command = [sys.executable, "-m", "bench.turn_cpu", "--stand-ins", str(graph_port), str(llm_port),
               "--model-latency", str(latency), *(["--tool-calls"] if tool_calls else [])]
    process = subprocess.Popen(command, cwd=ROOT)
    graph_url = f"http://127.0.0.1:{graph_port}"

    def up() -> bool:
        try:
            return httpx.get(graph_url + "/_bench/texts", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, interval=0.05, what="the stand-ins to start")
        yield graph_url, f"http://127.0.0.1:{llm_port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- one measurement ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    tree: str
    turns: int
    cpu_seconds: float
    wall_seconds: float
    idle_cpu_per_second: float

    @property
    def ms_per_turn(self) -> float:
        return self.cpu_seconds * 1000 / self.turns


@contextmanager
def worker_process(tree: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m core worker` in `tree`, stopped by SIGTERM; returns once it logged that it started."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_PREFIXES)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "core", "worker"], cwd=tree, env={**clean, **env},
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            def started() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"worker exited: {log_path.read_text()[-3000:]}")
                return "worker.started" in log_path.read_text(errors="replace")

            wait_for(started, timeout=60, interval=0.05, what="the worker to start")
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def post_round(http: httpx.AsyncClient, url: str, users: list[str], round_number: int) -> None:
    """One message from every user, posted with a little concurrency (as Meta delivers them)."""
    gate = asyncio.Semaphore(16)

    async def post(user: str) -> None:
        body = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, user,
                             f"hola, mensaje {round_number}: ¿qué cursos tienen para emprender en mi ciudad?")
        raw, headers = signed(body, EMPRENDEMY.secret)
        async with gate:
            (await http.post(url + "/webhook", content=raw, headers=headers)).raise_for_status()

    await asyncio.gather(*(post(user) for user in users))


def replies(graph_url: str) -> int:
    return httpx.get(graph_url + "/_bench/texts", timeout=10).json()["texts"]


def measure(tree: Path, label: str, args: argparse.Namespace, graph_url: str, llm_url: str,
            profile: Path | None) -> Measurement:
    """Answer users × rounds turns with a worker running `tree`'s code; its CPU time per turn."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**EMPRENDEMY.env(), "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}", "OPENAI_API_KEY": "sk-bench",
               "OPENAI_BASE_URL": llm_url, "WHATSAPP_API_BASE_URL": graph_url, "DEBOUNCE_SECONDS": "0",
               "MEDIA_ARCHIVE_DIR": str(Path(tmp) / "media"), "LOG_LEVEL": args.log_level,
               # Only pacing per recipient is relaxed: a user's next round follows its reply at once.
               "WHATSAPP_PAIR_INTERVAL_SECONDS": "0"}
        port = free_port()
        web = {**env, "RUN_SCHEDULER": "false", "LOG_LEVEL": "WARNING"}
        users = [f"54911{n:08d}" for n in range(args.users)]
        with server_process(uvicorn_command(port) + ["--no-access-log"], port, web, Path(tmp) / "web.log",
                            cwd=tree) as server, \
                worker_process(tree, env, Path(tmp) / "worker.log") as worker:
            replies(graph_url)  # reset the count
            idle_start, idle_cpu = time.monotonic(), cpu_seconds(worker.pid)
            time.sleep(1.0)
            idle = (cpu_seconds(worker.pid) - idle_cpu) / (time.monotonic() - idle_start)
            spy = None
            if profile is not None:
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker.pid),
                                        "--rate", "500", "--gil", "--format", "speedscope", "--output",
                                        str(profile / f"{label}.speedscope.json"), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            start, cpu = time.monotonic(), cpu_seconds(worker.pid)
            answered = 0

            async def rounds() -> None:
                nonlocal answered
                async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=16)) as http:
                    for number in range(args.rounds):
                        await post_round(http, server.url, users, number)
                        target = len(users)

                        def all_answered() -> bool:
                            nonlocal answered, target
                            seen = replies(graph_url)
                            answered += seen
                            target -= seen
                            return target <= 0

                        await asyncio.to_thread(wait_for, all_answered, timeout=300, interval=0.05,
                                                what=f"round {number} to be answered")

            asyncio.run(rounds())
            used, wall = cpu_seconds(worker.pid) - cpu, time.monotonic() - start
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
    return Measurement(label, answered, used, wall, idle)


# -- the profile's summary ----------------------------------------------------------------------------------------

def top_functions(path: Path, count: int) -> list[tuple[str, float, float]]:
    """(function, self share, total share) of a speedscope file's samples, busiest (by total) first."""
    document = json.loads(path.read_text())
    frames = document["shared"]["frames"]
    self_time: collections.Counter[int] = collections.Counter()
    total: collections.Counter[int] = collections.Counter()
    samples = 0
    for profile in document["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            samples += weight
            if stack:
                self_time[stack[-1]] += weight
            for frame in set(stack):
                total[frame] += weight
    samples = samples or 1

    def name(index: int) -> str:
        frame = frames[index]
        where = frame.get("file", "")
        for marker in ("site-packages/", "/lib/python3"):
            if marker in where:
                where = where.split(marker, 1)[1]
                break
        else:
            where = where.split("/tmp/", 1)[-1]
            where = where.replace(str(ROOT) + "/", "")
        return f"{frame['name']} ({where}:{frame.get('line', '')})"

    # By total: the project's own functions (the event loop and the CLI frames hold everything); by self: any.
    ours = [i for i in total if "/core/" in frames[i].get("file", "") and "/cli.py" not in frames[i].get("file", "")]
    ranked = sorted(ours, key=lambda i: -total[i])
    return [(name(i), self_time[i] / samples, total[i] / samples) for i in ranked[:count]] + \
        [("-- by self time --", 0.0, 0.0)] + \
        [(name(i), self_time[i] / samples, total[i] / samples)
         for i, _ in self_time.most_common(count)]


# -- the run ------------------------------------------------------------------------------------------------------

@contextmanager
def exported(ref: str) -> Iterator[Path]:
    """`git archive ref` in a temporary folder (the shared venv runs it; its .env, if any, is not copied)."""
    with tempfile.TemporaryDirectory(prefix="turn_cpu-") as tmp:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def report(results: list[Measurement], turns: int) -> None:
    for result in results:
        print(f"{result.tree:9} {result.turns:5} turns  {result.cpu_seconds:6.2f} s CPU in {result.wall_seconds:5.1f} s"
              f"  = {result.ms_per_turn:5.2f} ms/turn  (idle {result.idle_cpu_per_second * 1000:.1f} ms CPU/s)")
        if result.turns != turns:
            print(f"  !! {result.turns} replies for {turns} turns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="messages per user, each after the previous reply")
    parser.add_argument("--model-latency", type=float, default=0.05)
    parser.add_argument("--tool-calls", action="store_true", help="one tool round in every turn")
    parser.add_argument("--log-level", default="INFO", help="the worker's LOG_LEVEL (production's default: INFO)")
    parser.add_argument("--baseline", metavar="REF", help="also measure git REF, alternating with this tree")
    parser.add_argument("--pairs", type=int, default=2, help="with --baseline: alternations of baseline and current")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the worker; speedscope files in DIR")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--stand-ins", nargs=2, type=int, metavar=("GRAPH_PORT", "LLM_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_ins:
        run_stand_ins(*args.stand_ins, args.model_latency, args.tool_calls)
        return
    turns = args.users * args.rounds
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"{args.users} users x {args.rounds} rounds = {turns} turns, model latency {args.model_latency} s, "
          f"tool round: {'yes' if args.tool_calls else 'no'}, worker LOG_LEVEL={args.log_level}", flush=True)
    with stand_ins(args.model_latency, args.tool_calls) as (graph_url, llm_url):
        if not args.baseline:
            result = measure(ROOT, "current", args, graph_url, llm_url, args.profile)
            report([result], turns)
            profiles = {"current": args.profile / "current.speedscope.json"} if args.profile else {}
        else:
            with exported(args.baseline) as base:
                results: list[Measurement] = []
                for pair in range(args.pairs):
                    last = pair == args.pairs - 1
                    for tree, label in ((base, "baseline"), (ROOT, "current")):
                        results.append(measure(tree, label, args, graph_url, llm_url,
                                               args.profile if last else None))
                        report(results[-1:], turns)
            ratios = [current.ms_per_turn / before.ms_per_turn
                      for before, current in zip(results[::2], results[1::2], strict=True)]
            print(f"baseline {args.baseline}: median {statistics.median(r.ms_per_turn for r in results[::2]):.2f} "
                  f"ms/turn; current: median {statistics.median(r.ms_per_turn for r in results[1::2]):.2f} ms/turn")
            print("current/baseline CPU per turn, per pair: " + ", ".join(f"{r:.2f}" for r in ratios)
                  + f"; median {statistics.median(ratios):.2f}")
            profiles = {label: args.profile / f"{label}.speedscope.json"
                        for label in ("baseline", "current")} if args.profile else {}
    for label, path in profiles.items():
        if path.exists():
            print(f"\npy-spy, {label} worker ({path}): share of samples, self / total")
            for name, own, total in top_functions(path, args.top):
                print(f"  {own * 100:5.1f} % {total * 100:5.1f} %  {name}")


if __name__ == "__main__":
    main()
