"""The load generator of bench.conversation_bursts, in a process of its own: bursts of signed messages.

Run as `python -m bench.burst_sender < plan.json` (the fields of `Plan`); prints one JSON line: each user's monotonic
time of their last acknowledged message, every acknowledgement time in ms, and the deliveries refused.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass

import httpx

from tests.support import signed, text_delivery


@dataclass(frozen=True)
class Plan:
    url: str  # the server's base URL
    waba_id: str
    phone_number_id: str
    secret: str
    users: list[str]
    messages: int
    gap: float  # seconds between a burst's messages
    spread: float  # bursts start at random within this many seconds
    seed: int = 7


@dataclass
class Outcome:
    last: dict[str, float]
    ack_ms: list[float]
    refused: int


async def send_burst(http: httpx.AsyncClient, plan: Plan, user: str, delay: float, outcome: Outcome) -> None:
    """After `delay`, post plan.messages signed messages from one user, plan.gap apart, each stamped now."""
    await asyncio.sleep(delay)
    for n in range(plan.messages):
        delivery = text_delivery(plan.waba_id, plan.phone_number_id, user, f"mensaje {n}",
                                 wamid=f"wamid.BURST.{user}.{n}", timestamp=int(time.time()))
        raw, headers = signed(delivery, plan.secret)
        start = time.monotonic()
        try:
            response = await http.post(plan.url + "/webhook", content=raw, headers=headers)
            accepted = response.status_code == 200
        except httpx.HTTPError:
            accepted = False
        done = time.monotonic()
        if accepted:
            outcome.ack_ms.append((done - start) * 1000)
            outcome.last[user] = done
        else:
            outcome.refused += 1
        if n < plan.messages - 1:
            await asyncio.sleep(plan.gap)


async def run(plan: Plan) -> Outcome:
    outcome = Outcome({}, [], 0)
    starts = random.Random(plan.seed)
    # A connection per conversation, so no request waits for the client's pool: the times are the server's.
    limits = httpx.Limits(max_connections=len(plan.users), max_keepalive_connections=len(plan.users))
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(send_burst(http, plan, user, starts.uniform(0, plan.spread), outcome)
                               for user in plan.users))
    return outcome


def main() -> None:
    plan = Plan(**json.load(sys.stdin))
    print(json.dumps(asdict(asyncio.run(run(plan)))))


if __name__ == "__main__":
    main()
