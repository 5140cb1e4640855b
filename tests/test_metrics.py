"""GET /metrics: a burst through the real app moves its client's counters by what happened, and only its client's;
the store's gauges; the bearer token; several processes adding up in prometheus-client's multiprocess mode."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.config import load_settings
from core.errors import ConfigError
from core.ops.prices import PriceTable
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.clock import ManualClock
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.processes import free_port, server_process, uvicorn_command
from tests.support import new_wamid, text_delivery, wait_for

UNDELIVERABLE = 131026  # Meta's "message undeliverable": not retried, the part marked failed


def scrape(url: str, token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics by (name, labels)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (sample, sample_labels), v in samples.items() if sample == name and wanted <= sample_labels)


def deliver(app: RunningApp, user: str, text: str, *, wamid: str | None = None) -> dict[str, Any]:
    body = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, user, text, wamid=wamid or new_wamid())
    response = app.post_webhook(body, EMPRENDEMY.secret)
    assert response.status_code == 200, response.text
    return body


def test_a_burst_moves_its_clients_counters_by_what_happened(start_app: Any, graph: FakeGraph, llm: FakeOpenAI):
    # A debounce long enough that each person's two messages are one turn on a loaded machine too.
    live_app = start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                         whatsapp_api_base_url=graph.url, debounce_seconds=1.5)
    before = scrape(live_app.url)
    users = ["5491170000001", "5491170000002", "5491170000003"]
    graph.fail_next(400, UNDELIVERABLE, "undeliverable", to=users[2])
    first = None
    for user in users:  # two messages each, within the debounce: one turn per person
        body = deliver(live_app, user, "hola")
        first = first or body
        deliver(live_app, user, "quiero info")
    redelivered = first["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    deliver(live_app, users[0], "hola", wamid=redelivered)  # Meta's redelivery: acknowledged, changes nothing
    wait_for(lambda: all(live_app.settled(EMPRENDEMY, user) for user in users), timeout=20, what="every burst answered")

    after = scrape(live_app.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, client=EMPRENDEMY.name, **labels) - value(before, name, client=EMPRENDEMY.name,
                                                                            **labels)

    assert moved("bot_webhook_ack_seconds_count") == 7
    assert moved("bot_webhook_ack_seconds_bucket", le="+Inf") == 7
    assert moved("bot_turns_total") == 3
    assert moved("bot_model_calls_total", result="ok") == len(llm.requests) == 3
    assert moved("bot_model_calls_total", result="error") == 0
    assert moved("bot_model_call_seconds_count") == 3
    # The stand-in reports 11 prompt and 7 completion tokens per call, under the model the client asked for.
    model = llm.requests[0]["model"]
    assert moved("bot_model_tokens_total", model=model, kind="prompt") == 33
    assert moved("bot_model_tokens_total", model=model, kind="completion") == 21
    price = PriceTable().price(model)  # the default table: what the tokens cost in USD
    assert price is not None
    assert moved("bot_model_cost_usd_total", model=model) == pytest.approx((33 * price.input + 21 * price.output) / 1e6)
    assert moved("bot_whatsapp_sends_total", result="sent") == 2
    assert moved("bot_whatsapp_sends_total", result="failed") == 1
    assert moved("bot_whatsapp_send_errors_total", code=str(UNDELIVERABLE)) == 1
    assert moved("bot_conversations_flagged_total") == 1
    assert moved("bot_fallbacks_total") == 0
    # Read from the store at scrape time: the refused conversation waits for a person; nothing is due.
    assert value(after, "bot_conversations_needing_attention", client=EMPRENDEMY.name) == 1
    assert value(after, "bot_conversations_due", client=EMPRENDEMY.name) == 0
    assert value(after, "bot_effects_pending", client=EMPRENDEMY.name) == 0
    # The other client's figures did not move.
    for name in ("bot_webhook_ack_seconds_count", "bot_turns_total", "bot_model_calls_total",
                 "bot_whatsapp_sends_total", "bot_conversations_flagged_total"):
        assert value(after, name, client=DEMO.name) == value(before, name, client=DEMO.name) == 0, name
    assert value(after, "bot_conversations_needing_attention", client=DEMO.name) == 0


def test_a_model_that_fails_is_counted_with_the_fallback(live_app: RunningApp, llm: FakeOpenAI, graph: FakeGraph):
    llm.respond = lambda body: Reply(status=400)  # not retried: one failed call, then the fallback
    deliver(live_app, "5491170000009", "hola")
    wait_for(lambda: live_app.settled(EMPRENDEMY, "5491170000009"), timeout=20, what="the fallback to be sent")
    samples = scrape(live_app.url)
    assert value(samples, "bot_model_calls_total", client=EMPRENDEMY.name, result="error") == 1
    assert value(samples, "bot_fallbacks_total", client=EMPRENDEMY.name, reason="model_error") == 1
    assert value(samples, "bot_conversations_flagged_total", client=EMPRENDEMY.name) == 1
    assert value(samples, "bot_whatsapp_sends_total", client=EMPRENDEMY.name, result="sent") == 1


def test_conversations_due_and_the_oldest_ones_wait_are_read_from_the_store(start_app: Any):
    clock = ManualClock(datetime.now(UTC))
    app = start_app({**EMPRENDEMY.env(), **DEMO.env()}, clock=clock, run_scheduler=False)
    deliver(app, "5491170000011", "hola")
    clock.advance(10)
    deliver(app, "5491170000012", "hola")
    clock.advance(30)
    samples = scrape(app.url)
    assert value(samples, "bot_conversations_due", client=EMPRENDEMY.name) == 2
    # Due 0.3 s (the debounce) after the first message, 40 s ago by the app's clock.
    assert value(samples, "bot_oldest_due_age_seconds", client=EMPRENDEMY.name) == pytest.approx(40 - 0.3)
    assert value(samples, "bot_conversations_due", client=DEMO.name) == 0
    assert value(samples, "bot_oldest_due_age_seconds", client=DEMO.name) == 0


def test_metrics_token_is_asked_for_when_set(start_app: Any):
    app = start_app(EMPRENDEMY.env(), metrics_token="scrape-secret", run_scheduler=False)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-secret"},
                    {"Authorization": "scrape-secret"}):
        response = httpx.get(app.url + "/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert "METRICS_TOKEN" in response.json()["detail"] and "scrape-secret" not in response.text
        assert response.headers["www-authenticate"] == "Bearer"
    assert "bot_webhook_ack_seconds" in httpx.get(app.url + "/metrics",
                                                  headers={"Authorization": "Bearer scrape-secret"}).text


def test_processes_sharing_a_multiprocess_folder_add_up(tmp_path: Path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**EMPRENDEMY.env(), "RUN_SCHEDULER": "false", "PROMETHEUS_MULTIPROC_DIR": str(folder),
           "LOG_LEVEL": "WARNING", "SANDBOX_SECRET": "sandbox-secret"}
    ports = free_port(), free_port()
    with server_process(uvicorn_command(ports[0]), ports[0], {**env, "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"},
                        tmp_path / "a.log") as first, \
            server_process(uvicorn_command(ports[1]), ports[1], {**env, "DATABASE_URL": f"sqlite:///{tmp_path}/b.db"},
                           tmp_path / "b.log") as second:
        for server, count in ((first, 3), (second, 2)):
            for n in range(count):
                app = RunningApp(server.url, httpx.Client(timeout=10), None, None)  # type: ignore[arg-type]
                deliver(app, f"54911700001{n:02d}", "hola")
        for server in (first, second):  # whichever process is scraped reports both
            assert value(scrape(server.url), "bot_webhook_ack_seconds_count", client=EMPRENDEMY.name) == 5
        second.process.send_signal(signal.SIGKILL)  # a worker that died: what it counted stays counted
        second.process.wait(timeout=10)
        assert value(scrape(first.url), "bot_webhook_ack_seconds_count", client=EMPRENDEMY.name) == 5


def test_a_multiprocess_folder_set_only_in_env_file_is_a_clear_startup_error(tmp_path: Path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR: must be set in the process environment"):
        load_settings(_env_file=None, prometheus_multiproc_dir=folder)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR: .* is not a folder that can be used"):
        load_settings(_env_file=None, prometheus_multiproc_dir=tmp_path / "a-file")


def test_the_grafana_dashboard_uses_only_metrics_the_service_exposes(live_app: RunningApp):
    """Every metric name in docs/grafana-dashboard.json's queries is one GET /metrics serves (and docs/metrics.md
    describes): a renamed metric would leave a panel empty without a word."""
    root = Path(__file__).parent.parent
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\b(bot_[a-z_]+)\b", query)}
    served = {family.name for family in text_string_to_metric_families(httpx.get(live_app.url + "/metrics").text)}
    suffixes = ("_bucket", "_count", "_sum", "_total")
    bases = {name.removesuffix(suffix) for name in used for suffix in suffixes if name.endswith(suffix)} | \
        {name for name in used if not name.endswith(suffixes)}
    assert bases <= served, bases - served
    described = (root / "docs" / "metrics.md").read_text()
    undescribed = {name for name in served if name.startswith("bot_")
                   and f"`{name}`" not in described and f"`{name}_total`" not in described}
    assert undescribed == set()
