"""Two running apps on one store (SQLite file, PostgreSQL) send one broadcast together no faster than the number's
broadcast rate: measured on the Graph stand-in's receive times, in every 1 s window. Paced per process as before,
two would send up to twice the rate."""

from __future__ import annotations

import bisect
from typing import Any

import httpx
import pytest

from tests.conftest import DEMO, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import wait_for

RATE = 20  # sends a second for the number's broadcasts (WHATSAPP_RATE_PER_SECOND 25 × BROADCAST_RATE_SHARE 0.8)
RECIPIENTS = 80
# Slots are 1 / RATE apart, so an on-time window holds RATE + 1 at most; a process the machine holds back sends its
# late ones together. A generous allowance for that, still far below the 2 × RATE of two unshared pacers.
ALLOWED = int(RATE * 1.3) + 1
SALUDO = {
    "id": "77", "name": "saludo", "language": "es_AR", "status": "APPROVED", "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "Hola {{1}}", "example": {"body_text": [["Ana"]]}}],
}


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    return each_store_url


def start(start_app: Any, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    # A short lease: a claim takes only the slots within half of it (1 s here), so the two apps take turns.
    running = start_app(DEMO.env(), openai_api_key="sk-test", openai_base_url=llm.url, whatsapp_api_base_url=graph.url,
                        whatsapp_rate_per_second=25, broadcast_rate_share=0.8, lease_seconds=2.0)
    wait_for(lambda: running.api(DEMO, "/templates").json(), what="the startup sync")
    return running


def most_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered))


def test_two_apps_on_one_store_share_the_numbers_rate(start_app: Any, graph: FakeGraph, llm: FakeOpenAI):
    graph.templates[DEMO.waba_id] = [dict(SALUDO)]
    first, second = start(start_app, graph, llm), start(start_app, graph, llm)
    keys = [f"54911{n:08d}" for n in range(RECIPIENTS)]
    created = first.http.post(f"{first.url}/api/v1/{DEMO.name}/broadcasts",
                              headers={"Authorization": f"Bearer {DEMO.api_key}"},
                              json={"template": "saludo", "language": "es_AR", "parameters": ["a"],
                                    "audience": {"user_keys": keys}})
    assert created.status_code == 202, created.text

    def done() -> bool:
        answer = httpx.get(f"{second.url}/api/v1/{DEMO.name}/broadcasts/{created.json()['id']}",
                           headers={"Authorization": f"Bearer {DEMO.api_key}"}).json()
        return answer["status"] == "done"

    wait_for(done, timeout=60, interval=0.1, what="the broadcast done")
    sends = graph.template_sends()
    assert sorted(call.body["to"] for call in sends) == keys  # each once
    busiest = most_in_one_second([call.received_at for call in sends])
    assert busiest <= ALLOWED, f"{busiest} sends in one second, at {RATE} a second"
