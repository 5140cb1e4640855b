"""A broadcast to many recipients from two server processes, one SIGKILLed mid-run: send rate, duplicates, skipped.

Run: .venv/bin/python -m bench.broadcast [--recipients 10000] [--rate 80] [--share 1.0] [--kill-after 0.3]
                                         [--database postgres|sqlite] [--lease SECONDS]

Three kinds of process. Two servers: uvicorn serving core.main:app with the app's real settings on one database (a
fresh database of a throwaway PostgreSQL from tests/postgres.py, or one SQLite file both open), the demo client live
(access token, app secret) with WHATSAPP_API_BASE_URL at the Graph stand-in, WHATSAPP_RATE_PER_SECOND = --rate and
BROADCAST_RATE_SHARE = --share; everything else is the app's default (LEASE_SECONDS 60 unless --lease). The
stand-ins (bench/standins.py, one process): the Graph stand-in lists the approved template, records each send's
recipient and receive time, and posts each send's signed `sent` status with its biz_opaque_callback_data back to the
servers in turn, as Meta does. The load generator is this process: the bot switched off (PUT …/bot), each recipient
writes once (a signed webhook delivery, alternating between the servers), so they are contacts (checked in the CSV
export); the bot switched on again; then POST …/broadcasts to all of them by user key. Once --kill-after of them
reached the stand-in, a server holding recipients under lease right then is SIGKILLed; the other finishes.

--share defaults to 1.0 here (the app's default is 0.9, leaving a tenth of the number's rate to replies), so the
limit the rate is judged against is the number's configured limit itself: rate × share, 80 a second by default.
Reported:
- the achieved send rate, first to last send at the stand-in: (sends − 1) / (last − first), as a ratio of
  rate × share (goal ≥ 0.95); the kill's idle slots and any wait for the victim's leases are inside it. Beside it,
  the median of the whole 1 s buckets from the first send (the steady rate, kill or not), the busiest 1 s window
  (the pacing's ceiling: rate × share + 1 on time), the longest gap between two sends, and the first-to-last rate
  of the sends before the kill (two servers) and after it (the survivor alone);
- duplicates: recipients the stand-in received more than once (goal 0);
- skipped: recipients that never reached the stand-in, and recipients GET …/broadcasts/{id} does not count as sent
  (total − sent − delivered − read; goal 0 both), with the broadcast's final counts;
- time to finish: from the 202 to the status `done`, beside the ideal (recipients / (rate × share)).
The last line is the same as one JSON object, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.servers import postgres
from bench.standins import StandIns, standins_process
from tests.conftest import DEMO
from tests.postgres import run_async
from tests.processes import ServerProcess, free_port, server_process, uvicorn_command
from tests.support import signed, text_delivery, wait_for

SALUDO = {
    "id": "77", "name": "saludo", "language": "es_AR", "status": "APPROVED", "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "Hola {{1}}", "example": {"body_text": [["Ana"]]}}],
}
AUTH = {"Authorization": f"Bearer {DEMO.api_key}"}
API = f"/api/v1/{DEMO.name}"
HOLDERS = ("SELECT lease_owner, count(*) FROM broadcast_recipients WHERE state = 'sending' "
           "AND lease_owner IS NOT NULL GROUP BY lease_owner")


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database URL: one SQLite file in `folder`, or a new database of a throwaway PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    with postgres() as server:
        yield server.create_database()


def lease_holders(database_url: str) -> dict[int, int]:
    """Recipients held under lease now, by the pid of the process holding them (an owner is <host>:<pid>:<random>)."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30) as db:
            rows = list(db.execute(HOLDERS))
    else:
        async def read() -> list[tuple[str, int]]:
            conn = await asyncpg.connect(database_url)
            try:
                return [(row[0], row[1]) for row in await conn.fetch(HOLDERS)]
            finally:
                await conn.close()
        rows = run_async(read())
    held: Counter[int] = Counter()
    for owner, count in rows:
        held[int(owner.split(":")[1])] += count
    return dict(held)


async def write_once(servers: list[ServerProcess], keys: list[str], concurrency: int) -> int:
    """Each key writes one signed text message (alternating servers); returns how many were refused."""
    refused = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def write(http: httpx.AsyncClient, n: int, key: str) -> None:
        nonlocal refused
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, key, "hola", wamid=f"wamid.BCAST.{key}",
                                 timestamp=int(time.time()), name=f"Persona {n}")
        raw, headers = signed(delivery, DEMO.secret)
        async with gate:
            try:
                answer = await http.post(servers[n % len(servers)].url + "/webhook", content=raw, headers=headers)
                refused += answer.status_code != 200
            except httpx.HTTPError:
                refused += 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(write(http, n, key) for n, key in enumerate(keys)))
    return refused


def contact_keys(server: ServerProcess) -> set[str]:
    """The user keys of the client's contacts, from the CSV export."""
    answer = httpx.get(f"{server.url}{API}/contacts.csv", headers=AUTH, timeout=120)
    answer.raise_for_status()
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    return {row["user_key"] for row in rows}


def switch_bot(server: ServerProcess, enabled: bool) -> None:
    httpx.put(f"{server.url}{API}/bot", headers=AUTH, json={"enabled": enabled}, timeout=10).raise_for_status()


def broadcast(server: ServerProcess, broadcast_id: int) -> dict[str, Any]:
    return httpx.get(f"{server.url}{API}/broadcasts/{broadcast_id}", headers=AUTH, timeout=10).json()


def rate_figures(times: list[float], limit: float) -> dict[str, Any]:
    """First-to-last rate, the median whole 1 s bucket, the busiest 1 s window and the longest gap, of sorted times."""
    span = times[-1] - times[0]
    first_to_last = (len(times) - 1) / span if span > 0 else 0.0
    buckets = Counter(int(at - times[0]) for at in times)
    whole = [buckets.get(second, 0) for second in range(int(span))]  # the last, partial second left out
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    longest = max(gaps, default=0.0)
    return {"first_to_last_per_s": round(first_to_last, 2), "ratio": round(first_to_last / limit, 3),
            "median_1s": statistics.median(whole) if whole else None,
            "median_1s_ratio": round(statistics.median(whole) / limit, 3) if whole else None,
            "busiest_1s": busiest, "longest_gap_s": round(longest, 2),
            "longest_gap_after_first_s": round(times[gaps.index(longest)] - times[0], 1) if gaps else None,
            "span_s": round(span, 2)}


def split_rates(times: list[float], killed_at: float, limit: float) -> dict[str, float | None]:
    """First-to-last rate of the sends before the kill (two servers) and after it (the survivor), as ratios."""
    def ratio(part: list[float]) -> float | None:
        return round((len(part) - 1) / (part[-1] - part[0]) / limit, 3) if len(part) > 1 and part[-1] > part[0] \
            else None
    return {"ratio_before_kill": ratio([at for at in times if at <= killed_at]),
            "ratio_after_kill": ratio([at for at in times if at > killed_at])}


def run(args: argparse.Namespace) -> dict[str, Any]:
    keys = [f"54911{n:08d}" for n in range(args.recipients)]
    limit = args.rate * args.share
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-broadcast-")))
        standins: StandIns = stack.enter_context(standins_process(folder / "standins.log"))
        standins.set_templates(DEMO.waba_id, [dict(SALUDO)])
        database_url = stack.enter_context(database(args.database, folder))
        env = {**DEMO.env(), "DATABASE_URL": database_url, "OPENAI_API_KEY": "sk-bench",
               "OPENAI_BASE_URL": standins.openai_url, "WHATSAPP_API_BASE_URL": standins.graph_url,
               "WHATSAPP_RATE_PER_SECOND": str(args.rate), "BROADCAST_RATE_SHARE": str(args.share),
               "LOG_LEVEL": "WARNING"}
        if args.lease is not None:
            env["LEASE_SECONDS"] = str(args.lease)
        servers: list[ServerProcess] = []
        for name in "ab":
            port = free_port()
            command = uvicorn_command(port) + ["--no-access-log"]
            servers.append(stack.enter_context(server_process(command, port, env, folder / f"server-{name}.log")))
        try:
            return measure(args, keys, limit, standins, servers, database_url)
        except BaseException:
            for server in servers:
                print(f"--- {server.log_path.name} (last 3000 characters)\n{server.log()[-3000:]}")
            raise


def measure(args: argparse.Namespace, keys: list[str], limit: float, standins: StandIns,
            servers: list[ServerProcess], database_url: str) -> dict[str, Any]:
    for server in servers:
        wait_for(lambda: httpx.get(f"{server.url}{API}/templates", headers=AUTH, timeout=10).json(), timeout=30,
                 what="the startup template sync")
    # The people write first, so they are contacts; with the bot off nobody is answered (no sends but the broadcast).
    switch_bot(servers[0], False)
    started = time.monotonic()
    refused = asyncio.run(write_once(servers, keys, args.concurrency))
    writing_s = time.monotonic() - started
    missing_contacts = len(set(keys) - contact_keys(servers[1]))
    if refused or missing_contacts:
        raise SystemExit(f"error: {refused} deliveries refused, {missing_contacts} writers not among the contacts")
    switch_bot(servers[0], True)
    standins.post_statuses([server.url for server in servers], DEMO.waba_id, DEMO.secret)

    created = httpx.post(f"{servers[0].url}{API}/broadcasts", headers=AUTH, timeout=120,
                         json={"template": "saludo", "language": "es_AR", "parameters": ["{{contact.name}}"],
                               "audience": {"user_keys": keys}})
    if created.status_code != 202:
        raise SystemExit(f"error: POST /broadcasts answered {created.status_code}: {created.text[:500]}")
    posted_at = time.monotonic()
    broadcast_id = created.json()["id"]

    # Mid-run, SIGKILL a server while it holds recipients (claimed, some maybe sent and not yet recorded).
    wait_for(lambda: standins.template_send_count() >= args.kill_after * len(keys), timeout=args.timeout,
             interval=0.05, what=f"{args.kill_after:.0%} of the recipients sent")
    pids = {server.process.pid: server for server in servers}
    held = wait_for(lambda: {pid: count for pid, count in lease_holders(database_url).items() if pid in pids},
                    timeout=60, interval=0.005, what="a server holding recipients")
    victim_pid = max(held, key=lambda pid: held[pid])
    victim = pids[victim_pid]
    victim.kill()
    killed_at = time.monotonic()
    sent_when_killed = standins.template_send_count()
    survivor = next(server for server in servers if server is not victim)

    done = wait_for(lambda: (b := broadcast(survivor, broadcast_id))["status"] == "done" and b,
                    timeout=args.timeout, interval=0.1, what="the survivor to finish the broadcast")
    finished_s = time.monotonic() - posted_at
    sends = standins.template_sends()

    received = Counter(to for to, _ in sends)
    duplicates = sum(1 for count in received.values() if count > 1)
    never_received = len(set(keys) - set(received))
    counts = done["counts"]
    counted_sent = sum(counts.get(state, 0) for state in ("sent", "delivered", "read"))
    times = sorted(at for _, at in sends)
    rates = rate_figures(times, limit)
    return {
        "benchmark": "broadcast", "database": args.database, "recipients": len(keys), "rate": args.rate,
        "share": args.share, "limit_per_s": limit, "lease_s": args.lease, "kill_after": args.kill_after,
        "contacts_written_s": round(writing_s, 1),
        "sent_when_killed": sent_when_killed, "victim_held": held[victim_pid],
        "kill_after_first_send_s": round(killed_at - times[0], 1) if times else None,
        **rates, **split_rates(times, killed_at, limit),
        "sends": len(sends), "duplicates": duplicates, "never_received": never_received,
        "not_counted_sent": done["total"] - counted_sent, "total": done["total"], "counts": counts,
        "finish_s": round(finished_s, 1), "ideal_s": round(len(keys) / limit, 1),
    }


def report(result: dict[str, Any]) -> None:
    print(f"{result['recipients']} recipients, two uvicorn servers on {result['database']}, "
          f"WHATSAPP_RATE_PER_SECOND={result['rate']} x BROADCAST_RATE_SHARE={result['share']} = "
          f"{result['limit_per_s']:g}/s, LEASE_SECONDS={result['lease_s'] or 'default (60)'}; "
          f"{result['recipients']} contacts written in {result['contacts_written_s']} s")
    print(f"killed: the server holding {result['victim_held']} recipients, {result['sent_when_killed']} sent "
          f"({result['kill_after_first_send_s']} s after the first send)")
    print(f"send rate, first to last: {result['first_to_last_per_s']}/s = {result['ratio']} of the limit   "
          f"(goal >= 0.95)")
    print(f"median whole second: {result['median_1s']} = {result['median_1s_ratio']} of the limit; busiest 1 s "
          f"window {result['busiest_1s']}; longest gap {result['longest_gap_s']} s "
          f"({result['longest_gap_after_first_s']} s after the first send)")
    print(f"before the kill (two servers): {result['ratio_before_kill']} of the limit; after it (the survivor "
          f"alone): {result['ratio_after_kill']}")
    print(f"duplicates: {result['duplicates']}   (goal 0)")
    print(f"skipped: {result['never_received']} never received, {result['not_counted_sent']} not counted sent   "
          f"(goal 0, 0)")
    print(f"final counts: total {result['total']}, {json.dumps(result['counts'])}")
    print(f"time to finish: {result['finish_s']} s (ideal {result['ideal_s']} s; first to last send "
          f"{result['span_s']} s)")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=80.0, help="WHATSAPP_RATE_PER_SECOND")
    parser.add_argument("--share", type=float, default=1.0,
                        help="BROADCAST_RATE_SHARE (1.0 here: the rate is judged against the number's limit)")
    parser.add_argument("--kill-after", type=float, default=0.3,
                        help="SIGKILL a server holding recipients once this fraction has reached the stand-in")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--lease", type=float, default=None,
                        help="LEASE_SECONDS (default: the app's, 60 s); what the victim held waits this long")
    parser.add_argument("--concurrency", type=int, default=32, help="deliveries in flight while contacts write")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the broadcast")
    args = parser.parse_args()
    if not 0 < args.kill_after < 1:
        parser.error("--kill-after is a fraction between 0 and 1")
    if not 0 < args.share <= 1:
        parser.error("--share is BROADCAST_RATE_SHARE: above 0, at most 1")
    left_s = args.recipients * (1 - args.kill_after) / (args.rate * args.share)
    if left_s < (args.lease or 60.0):
        print(f"note: the survivor runs out of queued recipients ~{left_s:.0f} s after the kill, before the victim's "
              f"leases end ({args.lease or 60:g} s): the rate then includes that wait (a shorter --lease avoids it)")
    report(run(args))


if __name__ == "__main__":
    main()
