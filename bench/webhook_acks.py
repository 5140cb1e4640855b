"""Webhook acknowledgements per second and p99 latency of the real app, as ratios of a bare FastAPI endpoint.

Run: .venv/bin/python -m bench.webhook_acks [--duration 10] [--threads 2] [--connections 32] [--workers 1,3]
                                            [--databases sqlite,postgres]

Each server is the Procfile's web command (gunicorn with uvicorn workers) with -w N, bound to 127.0.0.1, gunicorn's
access log off (its default), LOG_LEVEL=WARNING (--log-level), with an app secret and no access token (replies are
logged, not sent). The app runs on a fresh SQLite file, or on a fresh database of a throwaway PostgreSQL server on
127.0.0.1 (tests/postgres.py: fsync and synchronous_commit off unless --durable-postgres). Beside each app run, in the
same run, the same command serves a bare FastAPI app (generated into a temp dir: POST /webhook reads the body and
returns 200) under the same load; the ratio app/bare is the headline, since this machine is shared and noisy.

The load comes from `wrk` (C, its own threads: it does not share Python's GIL with anything), installed with
Debian's apt-get when missing and run as root. Every delivery is signed (X-Hub-Signature-256 with the client's app
secret): Python signs the bodies beforehand (bench/wrk.py), each a new wamid and a sender among --users people, so
every request is a real insert, not a duplicate. After each app run the inbound messages stored under that run's
wamids are counted in the database and compared with the 2xx responses wrk saw: a message acknowledged but not
stored is lost (goal 0). Requests still in flight when wrk stops may be stored without wrk counting their answer:
those show as `extra`, not as lost.

The app runs as it would in production: conversations come due after the debounce (DEBOUNCE_SECONDS, 3 s unless
--debounce) and are answered (offline replies, no OPENAI_API_KEY) by the same processes while the load goes on.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.servers import postgres, web_command, write_bare_app
from bench.wrk import Load, SignedBodies, ensure_wrk, run_wrk, write_signed_bodies
from tests.postgres import PostgresServer, run_async
from tests.processes import free_port, server_process
from tests.support import text_delivery

CLIENT, WABA_ID, PHONE_NUMBER_ID, SECRET = "demo", "1001", "2001", "bench-app-secret"
WAMID_PREFIX = "wamid.BENCH"


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


def signed_deliveries(folder: Path, tag: str, count: int, args: argparse.Namespace) -> SignedBodies:
    """`count` signed text deliveries, each a new wamid (tagged) from one of --users senders."""
    delivery = text_delivery(WABA_ID, PHONE_NUMBER_ID, "__F2__", "Hola, ¿cuánto cuesta el curso y cuándo empieza?",
                             wamid="__F1__", timestamp=int(time.time()))
    template = json.dumps(delivery, ensure_ascii=False)
    rows = ([f"{WAMID_PREFIX}.{tag}.{n}", f"54911{n * 7919 % args.users:08d}"] for n in range(count))
    return write_signed_bodies(folder / tag, template, rows, SECRET, args.threads)


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], folder: Path, name: str) -> Iterator[str]:
    with server_process(command, port, env, folder / f"{name}.log") as server:
        yield server.url + "/webhook"


def measure(wrk: str, url: str, warmup: SignedBodies, bodies: SignedBodies, args: argparse.Namespace) -> Load:
    if args.warmup > 0:
        run_wrk(wrk, url, warmup, connections=args.connections, duration=args.warmup, timeout=args.timeout)
    return run_wrk(wrk, url, bodies, connections=args.connections, duration=args.duration, timeout=args.timeout)


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


def bench(database: str, workers: int, wrk: str, folder: Path, bare_app: list[str], pg: PostgresServer | None,
          args: argparse.Namespace) -> Row:
    name = f"{database}-w{workers}"
    # The warm-up's bodies repeat (harmless there); each app measurement gets bodies of its own, none repeated.
    warmup = signed_deliveries(folder, f"{name}-warm", 2_000, args)
    bodies = signed_deliveries(folder, f"{name}-run", args.bodies or 15_000 * args.duration, args)
    port = free_port()
    with serving(web_command(bare_app[0], workers, port, bare_app[1:]), port, {"LOG_LEVEL": args.log_level},
                 folder, f"{name}-bare") as url:
        bare = measure(wrk, url, warmup, bodies, args)
    if database == "sqlite":
        db_path = folder / f"{name}.db"
        database_url = f"sqlite:///{db_path}"
    else:
        assert pg is not None
        database_url = pg.create_database()
    prefix = CLIENT.upper() + "_"
    env = {"DATABASE_URL": database_url, prefix + "WABA_IDS": WABA_ID, prefix + "PHONE_NUMBER_IDS": PHONE_NUMBER_ID,
           prefix + "APP_SECRET": SECRET, "LOG_LEVEL": args.log_level}
    if args.debounce is not None:
        env |= {"DEBOUNCE_SECONDS": str(args.debounce), "DEBOUNCE_MAX_SECONDS": str(max(args.debounce, 15.0))}
    port = free_port()
    with serving(web_command("core.main:app", workers, port), port, env, folder, f"{name}-app") as url:
        app = measure(wrk, url, warmup, bodies, args)
    tag = f"{name}-run"
    stored = stored_sqlite(db_path, tag) if database == "sqlite" else stored_postgres(database_url, tag)
    if pg is not None:
        pg.drop_database(database_url)
    return Row(database, workers, bare, app, stored)


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nwrk: {args.threads} threads, {args.connections} connections, {args.duration:g} s per measurement "
          f"(after {args.warmup:g} s of warm-up); senders among {args.users}; every body signed, a new wamid")
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
        if row.app.repeats:
            notes.append(f"app: {row.app.repeats} bodies sent twice (duplicates, not inserts): raise --bodies")
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
    parser.add_argument("--bodies", type=int, default=None,
                        help="signed bodies per app measurement, none repeated (default 15,000 a second of --duration)")
    parser.add_argument("--workers", default="1,3", help="gunicorn worker counts, comma separated")
    parser.add_argument("--databases", default="sqlite", help="sqlite and/or postgres, comma separated")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the servers (the app's default: INFO)")
    parser.add_argument("--debounce", type=float, default=None,
                        help="DEBOUNCE_SECONDS for the app (default: the app's, 3 s); e.g. 3600 for no replies "
                             "during the measurement")
    parser.add_argument("--durable-postgres", action="store_true",
                        help="PostgreSQL with fsync and synchronous_commit on (the test server has them off)")
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    if not set(databases) <= {"sqlite", "postgres"}:
        parser.error("--databases takes sqlite and/or postgres")
    workers = [int(n) for n in args.workers.split(",")]
    wrk = ensure_wrk()
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-acks-") as tmp:
        folder = Path(tmp)
        bare_app = write_bare_app(folder)
        for database in databases:
            with postgres(args.durable_postgres) if database == "postgres" else nullcontext() as pg:
                for count in workers:
                    row = bench(database, count, wrk, folder, bare_app, pg, args)
                    print(f"{database} -w{count}: bare {row.bare.per_second:,.0f} req/s, "
                          f"app {row.app.per_second:,.0f} req/s", file=sys.stderr)
                    rows.append(row)
    report(rows, args)
    print(json.dumps({"benchmark": "webhook_acks", "rows": [
        {"database": row.database, "workers": row.workers, "bare_per_s": round(row.bare.per_second),
         "app_per_s": round(row.app.per_second), "ratio": round(row.app.per_second / row.bare.per_second, 3),
         "app_p99_ms": row.app.p99_us / 1000, "bare_p99_ms": row.bare.p99_us / 1000,
         "p99_ratio": round(row.app.p99_us / max(row.bare.p99_us, 1), 2), "lost": row.lost} for row in rows]}))
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
