"""The console's pages with 10,000 conversations in the store: how long do the inbox and a conversation take?

Run: .venv/bin/python -m bench.console_pages [--conversations 10000] [--database sqlite] [--requests 200]

Stores --conversations conversations of one client through the app's own store API (each a message in and the
bot's reply, sent; every 20th one taken over, every 50th flagged; one long conversation of --long messages), and
a console admin account, on a fresh SQLite file or a fresh database of a throwaway PostgreSQL server. Then the
server (the Procfile's web command, -w 1, LOG_LEVEL=WARNING) is asked, by a client in this process (its own
process, not the server's), --requests times each: the inbox's first page, a deep page (page 100 of 200, offset 4,950),
the "needs attention" filter, a search by text, a short conversation and the long one, each a fresh GET with the
session cookie, one at a time. p50 and p99 of each are reported in ms (goal: under 200 ms), and as ratios against
GET /health of the same server in the same run (one store read: what a request costs with no page), since this
machine is shared and noisy. The store's connections while an SSE stream is open are checked by the tests
(docs/console.md), not here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.servers import percentile, postgres, web_command
from core.config import Settings
from core.console.passwords import hash_password
from core.services import open_store
from core.storage.base import Store
from core.storage.records import Debounce, NewMessage
from core.webhook.events import InboundMessage, parse_events
from tests.processes import free_port, server_process
from tests.support import text_delivery

CLIENT, WABA_ID, PHONE_NUMBER_ID = "demo", "1001", "2001"
EMAIL, PASSWORD = "bench@example.com", "bench-password-0123"
SECRET = "bench-console-secret-0123456789abcdef"
CHUNK = 500  # conversations claimed and answered per round while seeding


def inbound(user: str, text: str, n: int = 0) -> InboundMessage:
    delivery = text_delivery(WABA_ID, PHONE_NUMBER_ID, user, text, name=f"Persona {user[-5:]}",
                             wamid=f"wamid.CONSOLE.{user}.{n}")
    [event] = parse_events(delivery)
    assert isinstance(event, InboundMessage)
    return event


async def seed(store: Store, conversations: int, long: int) -> tuple[int, int]:
    """The conversations, answered and sent; returns the ids of a short and of the long conversation."""
    now = datetime.now(UTC) - timedelta(hours=1)
    users = [f"54911{n:08d}" for n in range(conversations)]
    for start in range(0, len(users), CHUNK):
        for n, user in enumerate(users[start:start + CHUNK], start):
            await store.record_inbound(CLIENT, inbound(user, f"Hola, consulta número {n}"), Debounce(0, 0), now)
        claims = await store.claim_due("bench-seed", now + timedelta(seconds=1), 3600, CHUNK)
        for claim in claims:
            batch = await store.pending_batch(claim.conversation.id)
            reply = NewMessage(direction="out", role="assistant", text="¡Hola! ¿En qué te ayudo?", status="pending",
                               prompt_tokens=120, completion_tokens=12)
            for message in await store.save_turn(claim, batch, f"seed-{claim.conversation.id}", [reply], now):
                await store.mark_sent(message.id, f"wamid.OUT.{message.id}", "sent", None)
            await store.finish_turn(claim, now)
    short = (await store.find_conversation(CLIENT, PHONE_NUMBER_ID, users[0]))
    longest = (await store.find_conversation(CLIENT, PHONE_NUMBER_ID, users[-1]))
    assert short is not None and longest is not None
    for conversation_id in range(short.id, short.id + conversations, 20):
        await store.set_mode(CLIENT, conversation_id, "human", now)
    for conversation_id in range(short.id, short.id + conversations, 50):
        await store.flag(conversation_id, "the bot failed 3 times on the same messages")
    for n in range(1, long // 2):  # the long one: --long messages in and out
        await store.record_inbound(CLIENT, inbound(users[-1], f"Otra pregunta, la {n}", n), Debounce(0, 0), now)
        [claim] = await store.claim_due("bench-seed", now + timedelta(seconds=1), 3600, 1)
        batch = await store.pending_batch(claim.conversation.id)
        reply = NewMessage(direction="out", role="assistant", text=f"Respuesta {n}", status="pending")
        for message in await store.save_turn(claim, batch, f"seed-long-{n}", [reply], now):
            await store.mark_sent(message.id, f"wamid.LONG.{n}", "sent", None)
        await store.finish_turn(claim, now)
    await store.add_console_user(EMAIL, hash_password(PASSWORD), "admin", None, now)
    return short.id, longest.id


async def seed_database(url: str, conversations: int, long: int) -> tuple[int, int]:
    store = open_store(Settings(database_url=url))
    await store.open()
    try:
        return await seed(store, conversations, long)
    finally:
        await store.close()


def log_in(http: httpx.Client, url: str) -> None:
    form = http.get(f"{url}/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text[:500]
    answer = http.post(f"{url}/console/login", data={"email": EMAIL, "password": PASSWORD, "csrf": csrf.group(1)})
    assert answer.status_code == 303, answer.text[:500]


def timed(http: httpx.Client, url: str, count: int, expect: str | None = None) -> list[float]:
    """Milliseconds of `count` GETs of `url`, one after the other; each must answer 200 (and hold `expect`)."""
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        answer = http.get(url)
        spent.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, f"{url}: {answer.status_code} {answer.text[:300]}"
        assert expect is None or expect in answer.text, f"{url} lacks {expect!r}"
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--long", type=int, default=400, help="messages of the long conversation (the page shows 500)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=200, help="GETs of each page")
    parser.add_argument("--warmup", type=int, default=20, help="GETs of each page before measuring")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp, \
            postgres() if args.database == "postgres" else nullcontext() as pg:
        folder = Path(tmp)
        url = pg.create_database() if pg is not None else f"sqlite:///{folder / 'console.db'}"
        seeding = time.monotonic()
        short, longest = asyncio.run(seed_database(url, args.conversations, args.long))
        print(f"stored {args.conversations:,} conversations in {time.monotonic() - seeding:.1f} s", file=sys.stderr)
        prefix = CLIENT.upper() + "_"
        env = {"DATABASE_URL": url, prefix + "WABA_IDS": WABA_ID, prefix + "PHONE_NUMBER_IDS": PHONE_NUMBER_ID,
               "CONSOLE_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
        port = free_port()
        pages = {
            "inbox": (f"/console/c/{CLIENT}", "conversation-item"),
            "inbox_deep_page": (f"/console/c/{CLIENT}?page={max(1, min(100, args.conversations // 50))}",
                                "conversation-item"),
            "inbox_attention": (f"/console/c/{CLIENT}?filter=attention", "conversation-item"),
            "inbox_search": (f"/console/c/{CLIENT}?q=n%C3%BAmero%20{args.conversations - 1}", "conversation-item"),
            "conversation": (f"/console/c/{CLIENT}/conversations/{short}", 'data-testid="message"'),
            "conversation_long": (f"/console/c/{CLIENT}/conversations/{longest}", 'data-testid="message"'),
            "health": ("/health", None),
        }
        results: dict[str, list[float]] = {}
        with server_process(web_command("core.main:app", 1, port), port, env, folder / "app.log") as server, \
                httpx.Client(timeout=30) as http:
            log_in(http, server.url)
            for name, (path, expect) in pages.items():
                timed(http, server.url + path, args.warmup, expect)
            for name, (path, expect) in pages.items():
                results[name] = timed(http, server.url + path, args.requests, expect)
    health = results.pop("health")
    base_p50, base_p99 = percentile(health, 0.5), percentile(health, 0.99)
    summary: dict[str, object] = {"benchmark": "console_pages", "database": args.database,
                                  "conversations": args.conversations, "requests": args.requests,
                                  "health_p50_ms": round(base_p50, 1), "health_p99_ms": round(base_p99, 1)}
    print(f"\n{args.conversations:,} conversations, {args.database}, -w 1; {args.requests} GETs of each page, one "
          f"at a time, from this process (goal: under 200 ms)")
    print(f"{'page':<20}{'p50 ms':>9}{'p99 ms':>9}{'p50 / health':>14}{'p99 / health':>14}")
    print(f"{'health':<20}{base_p50:>9.1f}{base_p99:>9.1f}{1:>14.1f}{1:>14.1f}")
    for name, spent in results.items():
        p50, p99 = percentile(spent, 0.5), percentile(spent, 0.99)
        summary[f"{name}_p50_ms"], summary[f"{name}_p99_ms"] = round(p50, 1), round(p99, 1)
        print(f"{name:<20}{p50:>9.1f}{p99:>9.1f}{p50 / base_p50:>14.1f}{p99 / base_p99:>14.1f}")
    summary["worst_p99_ms"] = max(v for k, v in summary.items() if k.endswith("_p99_ms") and k != "health_p99_ms")
    print(json.dumps(summary))
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
