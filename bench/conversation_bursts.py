"""Bursts from many conversations at once: is every burst answered once, and what does the engine add?

Run: .venv/bin/python -m bench.conversation_bursts [--conversations 200] [--messages 3] [--model-latency 0.8]

The server runs as a real uvicorn process on a fresh SQLite file, answering as the emprendemy client (single
prompt: one model call per turn); the Graph API and OpenAI stand-ins run in
this process on 127.0.0.1 (the model answers after --model-latency seconds). Reported:
- model calls per burst and replies per burst (goal: exactly 1.0), messages lost (goal: 0);
- overhead: time from a burst's last message to its reply, minus the debounce and the model latency,
  p50 and p99; and, as a ratio, against a baseline measured in the same run: one bare request to each
  stand-in (what a reply costs with no engine at all), since this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import serve
from tests.processes import free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


ACK_TIMES: list[float] = []


async def send_burst(http: httpx.AsyncClient, url: str, user: str, count: int, gap: float, delay: float) -> float:
    """After `delay`, post `count` signed messages from one user; returns the monotonic time of the last one."""
    await asyncio.sleep(delay)
    now = int(time.time())
    last = 0.0
    for n in range(count):
        raw, headers = signed(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, user, f"mensaje {n}", timestamp=now + n),
                              EMPRENDEMY.secret)
        start = time.monotonic()
        response = await http.post(url + "/webhook", content=raw, headers=headers)
        response.raise_for_status()
        last = time.monotonic()
        ACK_TIMES.append(last - start)
        if n < count - 1:
            await asyncio.sleep(gap)
    return last


async def baseline(graph_url: str, llm_url: str, rounds: int = 20) -> float:
    """Median time of one bare call to each stand-in: the floor a reply costs without the engine."""
    times = []
    async with httpx.AsyncClient() as http:
        for _ in range(rounds):
            start = time.monotonic()
            await http.post(llm_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
            await http.post(f"{graph_url}/{EMPRENDEMY.phone_number_id}/messages",
                            json={"type": "text", "to": "1", "text": {"body": "x"}})
            times.append(time.monotonic() - start)
    return statistics.median(times)


async def run(args: argparse.Namespace) -> None:
    graph, llm = FakeGraph(), FakeOpenAI()
    with serve(graph.app) as graph_url, serve(llm.app) as llm_base, tempfile.TemporaryDirectory() as tmp:
        llm_url = llm_base + "/v1"
        floor = await baseline(graph_url, llm_url)
        graph.calls.clear()
        llm.requests.clear()
        llm.latency_seconds = args.model_latency
        env = {**EMPRENDEMY.env(), "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}", "OPENAI_API_KEY": "sk-bench",
               "OPENAI_BASE_URL": llm_url, "WHATSAPP_API_BASE_URL": graph_url, "DEBOUNCE_SECONDS": str(args.debounce),
               "DEBOUNCE_MAX_SECONDS": str(args.debounce * 4), "SCHEDULER_CONCURRENCY": str(args.concurrency),
               "CLIENT_CONCURRENCY": str(args.concurrency), "LOG_LEVEL": "WARNING"}
        port = free_port()
        with server_process(uvicorn_command(port) + ["--no-access-log"], port, env, Path(tmp) / "server.log") as server:
            users = [f"54911{n:08d}" for n in range(args.conversations)]
            limits = httpx.Limits(max_connections=64)
            starts = random.Random(7)
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                lasts = await asyncio.gather(*(send_burst(http, server.url, user, args.messages, args.gap,
                                                          starts.uniform(0, args.spread)) for user in users))
            last_by_user = dict(zip(users, lasts, strict=True))
            wait_for(lambda: len({c.body["to"] for c in graph.texts()}) >= len(users), timeout=120, interval=0.1,
                     what="every burst to be answered")
            # Let anything extra (a second reply) show up before counting: one more model latency and debounce.
            time.sleep(args.model_latency + args.debounce * 2)
            async with httpx.AsyncClient(timeout=30) as http:
                stored = 0
                auth = {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}
                api = f"{server.url}/api/v1/{EMPRENDEMY.name}/conversations"
                conversations = (await http.get(f"{api}?limit=500", headers=auth)).json()
                for conversation in conversations:
                    messages = (await http.get(f"{api}/{conversation['id']}/messages", headers=auth)).json()
                    stored += sum(1 for m in messages if m["direction"] == "in")

    texts = graph.texts()
    first_reply = {}
    for call in texts:
        first_reply.setdefault(call.body["to"], call.received_at)
    overheads = [first_reply[user] - last_by_user[user] - args.debounce - args.model_latency for user in users]
    sent = args.conversations * args.messages
    p50, p99 = percentile(overheads, 0.5), percentile(overheads, 0.99)
    print(f"conversations {args.conversations} starting within {args.spread} s, messages per burst {args.messages} "
          f"({args.gap} s apart), debounce {args.debounce} s, model latency {args.model_latency} s")
    print(f"model calls per burst: {len(llm.requests) / args.conversations:.3f}   (goal 1.0)")
    print(f"replies per burst:     {len(texts) / args.conversations:.3f}   (goal exactly 1.0)")
    print(f"messages lost:         {sent - stored}   (goal 0; {stored} of {sent} stored)")
    print(f"webhook acknowledgement p50 {percentile(ACK_TIMES, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(ACK_TIMES, 0.99) * 1000:.0f} ms")
    print(f"baseline (bare model + send call): {floor * 1000:.1f} ms")
    print(f"overhead p50: {p50 * 1000:.0f} ms = {p50 / floor:.1f}x baseline")
    print(f"overhead p99: {p99 * 1000:.0f} ms = {p99 / floor:.1f}x baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between a burst's messages")
    parser.add_argument("--spread", type=float, default=3.0, help="bursts start at random within this many seconds")
    parser.add_argument("--debounce", type=float, default=1.0)
    parser.add_argument("--model-latency", type=float, default=0.8)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
