"""A storm of status webhooks for stored outgoing messages: is every status recorded, and how fast, against a bare
FastAPI endpoint?

Run: .venv/bin/python -m bench.status_storm [--count 30000] [--database sqlite] [--workers 1] [--connections 32]

A broadcast to 10,000 people brings about 30,000 status webhooks (sent, delivered, read) within minutes. This
stores --count / 3 outgoing messages through the app's own store API (a turn per person that answers with their
share, each reply then marked sent with its wamid, as the sender does), on a fresh SQLite file or a fresh database
of a throwaway PostgreSQL server (tests/postgres.py). Then the server (the Procfile's web command with -w N, app
secret set, LOG_LEVEL=WARNING unless --log-level) receives the --count status webhooks, sent, then delivered, then
read, each signed and each exactly once, from wrk with pre-signed bodies (bench/wrk.py) in its own process. The
same bodies go, in the same run, to a bare FastAPI endpoint under the same command: the ratios app/bare of
statuses per second and of p99 acknowledgement latency are the headline, since this machine is shared and noisy.
Afterwards the database must hold every status (one message_statuses row each) and every message must have moved
forward to `read`: what is missing is lost (goal 0). Both servers get --warmup seconds of statuses naming messages
nobody sent first (stored too, but left out of the checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.servers import postgres, web_command, write_bare_app
from bench.wrk import Load, SignedBodies, ensure_wrk, run_wrk, write_signed_bodies
from core.config import Settings
from core.services import open_store
from core.storage.base import Store
from core.storage.records import Debounce, NewMessage
from core.webhook.events import InboundMessage, parse_events
from tests.postgres import run_async
from tests.processes import free_port, server_process
from tests.support import load_delivery, text_delivery

CLIENT, WABA_ID, PHONE_NUMBER_ID, SECRET = "demo", "1001", "2001", "bench-app-secret"
WAMID_PREFIX = "wamid.STORM"
STATUSES = ("sent", "delivered", "read")


@dataclass(frozen=True)
class Outgoing:
    wamid: str
    recipient: str


@dataclass(frozen=True)
class Check:
    """What the database holds after the storm."""

    recorded: int  # message_statuses rows of the seeded messages
    moved: int  # seeded messages whose status is `read`
    messages: int


def inbound(user: str) -> InboundMessage:
    """The message that opens a person's conversation, parsed as the webhook parses it."""
    delivery = text_delivery(WABA_ID, PHONE_NUMBER_ID, user, "¿Hay promociones?", wamid=f"wamid.STORMIN.{user}")
    [event] = parse_events(delivery)
    assert isinstance(event, InboundMessage)
    return event


async def seed(store: Store, messages: int, people: int) -> list[Outgoing]:
    """Store `messages` outgoing messages, sent, among `people` conversations, through the store's turn API."""
    now = datetime.now(UTC)
    users = [f"54922{n:08d}" for n in range(min(people, messages))]
    for user in users:
        await store.record_inbound(CLIENT, inbound(user), Debounce(0, 0), now)
    share = math.ceil(messages / len(users))
    outgoing: list[Outgoing] = []
    claims = await store.claim_due("bench-seed", now + timedelta(seconds=1), 3600, len(users))
    assert len(claims) == len(users), f"claimed {len(claims)} of {len(users)} conversations"
    for claim in claims:
        user = claim.conversation.user_key
        count = min(share, messages - len(outgoing))
        batch = await store.pending_batch(claim.conversation.id)
        replies = [NewMessage(direction="out", role="assistant", text=f"Oferta {n} para vos", status="pending")
                   for n in range(count)]
        stored = await store.save_turn(claim, batch, f"seed-{claim.conversation.id}", replies, now)
        for message in stored:
            wamid = f"{WAMID_PREFIX}.{len(outgoing):06d}"
            await store.mark_sent(message.id, wamid, "sent", None)
            outgoing.append(Outgoing(wamid, user))
        await store.finish_turn(claim, now)
    return outgoing


async def seed_database(url: str, messages: int, people: int) -> list[Outgoing]:
    store = open_store(Settings(database_url=url))
    await store.open()
    try:
        return await seed(store, messages, people)
    finally:
        await store.close()


def status_template() -> str:
    """A recorded status delivery (tests/data/webhooks) with fields for the wamid, status, time and recipient."""
    delivery = load_delivery("status_sent.json", WABA_ID, PHONE_NUMBER_ID)
    value = delivery["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"wa_id": "__F4__"}]
    status = value["statuses"][0]
    status.pop("recipient_user_id", None)
    status |= {"id": "__F1__", "status": "__F2__", "timestamp": "__F3__", "recipient_id": "__F4__"}
    return json.dumps(delivery)


def storm(folder: Path, outgoing: list[Outgoing], threads: int) -> SignedBodies:
    """Every message's sent, then every delivered, then every read: one signed webhook each."""
    stamp = str(int(time.time()))
    rows = ([item.wamid, status, stamp, item.recipient] for status in STATUSES for item in outgoing)
    return write_signed_bodies(folder / "storm", status_template(), rows, SECRET, threads)


def warmup_bodies(folder: Path, threads: int) -> SignedBodies:
    stamp = str(int(time.time()))
    rows = ([f"wamid.WARMUP.{n}", STATUSES[n % 3], stamp, "5490000000000"] for n in range(2_000))
    return write_signed_bodies(folder / "warmup", status_template(), rows, SECRET, threads)


def check_sqlite(path: Path) -> Check:
    with sqlite3.connect(path) as db:
        recorded = db.execute("SELECT count(*) FROM message_statuses WHERE client = ? AND wamid LIKE ?",
                              (CLIENT, f"{WAMID_PREFIX}.%")).fetchone()[0]
        moved, messages = db.execute("SELECT count(*) FILTER (WHERE status = 'read'), count(*) FROM messages "
                                     "WHERE wamid LIKE ?", (f"{WAMID_PREFIX}.%",)).fetchone()
    return Check(recorded, moved, messages)


def check_postgres(url: str) -> Check:
    async def count() -> Check:
        db = await asyncpg.connect(url)
        try:
            recorded = await db.fetchval("SELECT count(*) FROM message_statuses WHERE client = $1 AND wamid LIKE $2",
                                         CLIENT, f"{WAMID_PREFIX}.%")
            row = await db.fetchrow("SELECT count(*) FILTER (WHERE status = 'read') AS moved, count(*) AS messages "
                                    "FROM messages WHERE wamid LIKE $1", f"{WAMID_PREFIX}.%")
            return Check(recorded, row["moved"], row["messages"])
        finally:
            await db.close()

    return run_async(count())


def measure(wrk: str, command: list[str], port: int, env: dict[str, str], log: Path, warmup: SignedBodies,
            bodies: SignedBodies, args: argparse.Namespace) -> Load:
    with server_process(command, port, env, log) as server:
        url = server.url + "/webhook"
        if args.warmup > 0:
            run_wrk(wrk, url, warmup, connections=args.connections, duration=args.warmup, timeout=args.timeout)
        return run_wrk(wrk, url, bodies, connections=args.connections, duration=args.bound, timeout=args.timeout,
                       once=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30_000, help="status webhooks (three per stored message)")
    parser.add_argument("--people", type=int, default=1000, help="conversations the messages are spread over")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--durable-postgres", action="store_true",
                        help="PostgreSQL with fsync and synchronous_commit on (the test server has them off)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (kept alive)")
    parser.add_argument("--timeout", type=int, default=5, help="wrk's request timeout, whole seconds")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of other statuses before each measurement")
    parser.add_argument("--bound", type=int, default=600, help="seconds after which a measurement gives up")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the servers (the app's default: INFO)")
    args = parser.parse_args()
    if args.count < 3 * args.threads:
        parser.error("--count must be at least three per wrk thread")
    wrk = ensure_wrk()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp, \
            postgres(args.durable_postgres) if args.database == "postgres" else nullcontext() as pg:
        folder = Path(tmp)
        url = pg.create_database() if pg is not None else f"sqlite:///{folder / 'storm.db'}"
        seeding = time.monotonic()
        outgoing = asyncio.run(seed_database(url, args.count // 3, args.people))
        print(f"stored {len(outgoing):,} sent messages in {time.monotonic() - seeding:.1f} s", file=sys.stderr)
        bodies, warmup = storm(folder, outgoing, args.threads), warmup_bodies(folder, args.threads)
        bare_app = write_bare_app(folder)
        port = free_port()
        bare = measure(wrk, web_command(bare_app[0], args.workers, port, bare_app[1:]), port,
                       {"LOG_LEVEL": args.log_level}, folder / "bare.log", warmup, bodies, args)
        prefix = CLIENT.upper() + "_"
        env = {"DATABASE_URL": url, prefix + "WABA_IDS": WABA_ID, prefix + "PHONE_NUMBER_IDS": PHONE_NUMBER_ID,
               prefix + "APP_SECRET": SECRET, "LOG_LEVEL": args.log_level}
        port = free_port()
        app = measure(wrk, web_command("core.main:app", args.workers, port), port, env, folder / "app.log", warmup,
                      bodies, args)
        check = check_sqlite(folder / "storm.db") if pg is None else check_postgres(url)
    lost = bodies.count - check.recorded
    result = {
        "benchmark": "status_storm", "database": args.database, "workers": args.workers, "statuses": bodies.count,
        "messages": len(outgoing), "connections": args.connections,
        "bare_per_s": round(bare.per_second), "app_per_s": round(app.per_second),
        "ratio": round(app.per_second / bare.per_second, 3),
        "app_p99_ms": app.p99_us / 1000, "bare_p99_ms": bare.p99_us / 1000,
        "p99_ratio": round(app.p99_us / max(bare.p99_us, 1), 2),
        "acknowledged": app.ok, "recorded": check.recorded, "lost": lost,
        "not_moved_forward": check.messages - check.moved,
    }
    print(f"\n{bodies.count:,} status webhooks (sent, delivered, read) for {len(outgoing):,} stored messages, "
          f"{args.database}, -w {args.workers}; wrk {args.threads} threads, {args.connections} connections, "
          f"each body signed and sent once")
    print(f"statuses/s: bare {bare.per_second:,.0f}, app {app.per_second:,.0f}: ratio {result['ratio']:.2f}")
    print(f"p99 ms:     bare {bare.p99_us / 1000:.1f}, app {app.p99_us / 1000:.1f}: {result['p99_ratio']:.1f}x bare")
    print(f"acknowledged {app.ok:,} ({app.status_errors} refused, {app.socket_errors} socket errors); recorded "
          f"{check.recorded:,}: lost {lost} (goal 0); messages not at `read`: {result['not_moved_forward']} (goal 0)")
    print(json.dumps(result))
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
