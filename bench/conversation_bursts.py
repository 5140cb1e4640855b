"""Bursts from many conversations at once: is every burst answered once, and what does the engine add?

Run: .venv/bin/python -m bench.conversation_bursts [--conversations 200] [--messages 3] [--gap 0.3] [--spread 3]
                                                   [--debounce 1] [--model-latency 0.8] [--server gunicorn]

Three kinds of process, so the figures are the server's: the server (the Procfile's web command with -w 1, or
uvicorn with --server uvicorn) on a fresh SQLite file with the app's default settings apart from DEBOUNCE_SECONDS,
answering as the emprendemy client (single prompt: one model call per turn); the Graph API and OpenAI stand-ins
(bench/standins.py, one process; the model answers after --model-latency seconds); the load generator
(bench/burst_sender.py), posting each burst's messages signed with the client's app secret and stamped now.
Reported:
- model calls per burst and replies per burst (goal: exactly 1.000), messages lost (goal: 0);
- acknowledgement time p50 and p99, as the load generator saw it;
- overhead: time from a burst's last message to its reply, minus the debounce and the model latency, p50 and
  p99; and, as a ratio, against a baseline measured in the same run: one bare model call plus one send to the
  stand-ins (what a reply costs with no engine at all), since this machine is shared and noisy;
- the server's CPU time per turn: user plus system time of its processes (/proc/<pid>/stat) from before the first
  message to after the last reply, acknowledgements and idle polling included, over the turns stored.
The last line is the same as one JSON object, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench.burst_sender import Plan
from bench.servers import cpu_seconds, cpu_used, percentile, web_command
from bench.standins import StandIns, standins_process
from tests.conftest import EMPRENDEMY
from tests.processes import ROOT, free_port, server_process, uvicorn_command
from tests.support import wait_for


def baseline(standins: StandIns, rounds: int = 20) -> float:
    """Median seconds of one bare model call plus one send to the stand-ins: a reply's floor without the engine."""
    times = []
    with httpx.Client(timeout=10) as http:
        for _ in range(rounds):
            start = time.monotonic()
            http.post(standins.openai_url + "/chat/completions",
                      json={"model": "m", "messages": [{"role": "user", "content": "x"}]}).raise_for_status()
            http.post(f"{standins.graph_url}/{EMPRENDEMY.phone_number_id}/messages",
                      json={"messaging_product": "whatsapp", "type": "text", "to": "1", "text": {"body": "x"}}
                      ).raise_for_status()
            times.append(time.monotonic() - start)
    return statistics.median(times)


def send(plan: Plan) -> dict[str, Any]:
    """Run the load generator's process to its end; returns what it reports."""
    done = subprocess.run([sys.executable, "-m", "bench.burst_sender"], input=json.dumps(asdict(plan)), cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stored(path: Path) -> tuple[int, int]:
    """Inbound messages of the bursts stored, and the turns that answered them (distinct batches)."""
    with sqlite3.connect(path) as db:
        messages = db.execute("SELECT count(*) FROM messages WHERE direction = 'in' AND wamid LIKE 'wamid.BURST.%'"
                              ).fetchone()[0]
        turns = db.execute("SELECT count(DISTINCT batch_id) FROM messages WHERE direction = 'in' "
                           "AND batch_id IS NOT NULL").fetchone()[0]
    return messages, turns


def run(args: argparse.Namespace) -> dict[str, Any]:
    users = [f"54911{n:08d}" for n in range(args.conversations)]
    with tempfile.TemporaryDirectory(prefix="bench-bursts-") as tmp, \
            standins_process(Path(tmp) / "standins.log") as standins:
        floor = baseline(standins)
        standins.set_latency(args.model_latency)
        standins.reset()
        database = Path(tmp) / "bench.db"
        # The app's defaults, apart from the scenario's debounce and where its database and stand-ins are.
        env = {**EMPRENDEMY.env(), "DATABASE_URL": f"sqlite:///{database}", "OPENAI_API_KEY": "sk-bench",
               "OPENAI_BASE_URL": standins.openai_url, "WHATSAPP_API_BASE_URL": standins.graph_url,
               "DEBOUNCE_SECONDS": str(args.debounce), **dict(args.env)}
        port = free_port()
        command = web_command("core.main:app", 1, port) if args.server == "gunicorn" else \
            uvicorn_command(port) + ["--no-access-log"]
        with server_process(command, port, env, Path(tmp) / "server.log") as server:
            plan = Plan(server.url, EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, EMPRENDEMY.secret, users,
                        args.messages, args.gap, args.spread)
            cpu_before = cpu_seconds(server.process.pid)
            outcome = send(plan)
            wait_for(lambda: len({to for to, _ in standins.record().texts}) >= len(outcome["last"]),
                     timeout=args.timeout, interval=0.2, what="every burst to be answered")
            # Let anything extra (a second reply to a split burst) show up before counting.
            time.sleep(args.model_latency + args.debounce * 2)
            cpu = cpu_used(cpu_before, cpu_seconds(server.process.pid))
            record = standins.record()
        messages, turns = stored(database)

    first_reply: dict[str, float] = {}
    for to, at in record.texts:
        first_reply[to] = min(at, first_reply.get(to, at))
    overheads = [first_reply[user] - last - args.debounce - args.model_latency
                 for user, last in outcome["last"].items()]
    sent = args.conversations * args.messages
    acks = outcome["ack_ms"]
    p50, p99 = percentile(overheads, 0.5), percentile(overheads, 0.99)
    return {
        "benchmark": "conversation_bursts", "server": args.server, "conversations": args.conversations,
        "messages": args.messages, "gap_s": args.gap, "spread_s": args.spread, "debounce_s": args.debounce,
        "model_latency_s": args.model_latency, "env": dict(args.env),
        "model_calls_per_burst": round(record.model_calls / args.conversations, 3),
        "replies_per_burst": round(len(record.texts) / args.conversations, 3),
        "lost": sent - messages, "refused": outcome["refused"],
        "ack_p50_ms": round(percentile(acks, 0.5), 1), "ack_p99_ms": round(percentile(acks, 0.99), 1),
        "baseline_ms": round(floor * 1000, 2),
        "overhead_p50_ms": round(p50 * 1000), "overhead_p99_ms": round(p99 * 1000),
        "overhead_p50_x_baseline": round(p50 / floor, 1), "overhead_p99_x_baseline": round(p99 / floor, 1),
        "turns": turns, "server_cpu_s": round(cpu, 2), "cpu_ms_per_turn": round(cpu * 1000 / max(turns, 1), 1),
    }


def report(result: dict[str, Any]) -> None:
    print(f"server {result['server']} -w 1 (app defaults{', ' + str(result['env']) if result['env'] else ''}); "
          f"{result['conversations']} conversations starting within {result['spread_s']} s, "
          f"{result['messages']} messages per burst ({result['gap_s']} s apart), debounce {result['debounce_s']} s, "
          f"model latency {result['model_latency_s']} s")
    print(f"model calls per burst: {result['model_calls_per_burst']:.3f}   (goal 1.000)")
    print(f"replies per burst:     {result['replies_per_burst']:.3f}   (goal 1.000)")
    print(f"messages lost:         {result['lost']}   (goal 0; {result['refused']} deliveries refused)")
    print(f"acknowledgement p50 {result['ack_p50_ms']:.0f} ms, p99 {result['ack_p99_ms']:.0f} ms   (goal p99 <= 250)")
    print(f"baseline (bare model call + send): {result['baseline_ms']:.1f} ms")
    print(f"overhead p50: {result['overhead_p50_ms']} ms = {result['overhead_p50_x_baseline']}x baseline")
    print(f"overhead p99: {result['overhead_p99_ms']} ms = {result['overhead_p99_x_baseline']}x baseline   "
          f"(goal <= 100 ms)")
    print(f"server CPU: {result['server_cpu_s']:.2f} s for {result['turns']} turns = "
          f"{result['cpu_ms_per_turn']:.1f} ms per turn (acknowledgements included)")
    print(json.dumps(result))


def env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3, help="messages per burst")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between a burst's messages")
    parser.add_argument("--spread", type=float, default=3.0, help="bursts start at random within this many seconds")
    parser.add_argument("--debounce", type=float, default=1.0, help="DEBOUNCE_SECONDS")
    parser.add_argument("--model-latency", type=float, default=0.8, help="seconds the stand-in model takes")
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn",
                        help="the Procfile's web command with -w 1, or plain uvicorn")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every burst's reply")
    parser.add_argument("--env", type=env_pair, action="append", default=[], metavar="KEY=VALUE",
                        help="an app setting to change (experiments only: the goals are judged on the defaults)")
    report(run(parser.parse_args()))


if __name__ == "__main__":
    main()
