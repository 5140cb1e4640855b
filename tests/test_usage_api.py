"""GET /api/v1/<client>/usage and …/conversations/{id}/usage through the real app, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.ops.prices import DEFAULT_PRICES
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import text_delivery, wait_for

FIGURES = ("conversations", "messages_in", "messages_out", "model_calls", "prompt_tokens", "completion_tokens")


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    """start_app's DATABASE_URL: every test runs on SQLite and on PostgreSQL."""
    return each_store_url


def answered(app: RunningApp, graph: FakeGraph, wa_id: str, text: str) -> None:
    before = len([c for c in graph.texts() if c.body.get("to") == wa_id])
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, text, timestamp=int(app.clock.now().timestamp()))
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200
    wait_for(lambda: len([c for c in graph.texts() if c.body.get("to") == wa_id]) > before
             and app.settled(DEMO, wa_id), what="the bot's reply")


def period(app: RunningApp) -> str:
    """Yesterday to tomorrow by the app's clock (UTC): the test's days, whatever the hour it runs."""
    today = app.clock.now().date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


class TestUsage:
    def test_the_totals_are_the_sums_over_the_conversations(self, live_app: RunningApp, graph: FakeGraph,
                                                            llm: FakeOpenAI):
        answered(live_app, graph, "5491155551001", "hola")
        answered(live_app, graph, "5491155551001", "quiero info del curso")
        answered(live_app, graph, "5491155551002", "hola")
        response = live_app.api(DEMO, f"/usage?{period(live_app)}&by=conversation")
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["client"], report["timezone"], len(report["days"])) == ("demo", "UTC", 3)
        assert set(report) >= {"from", "to", "days", "totals", "conversations"}
        totals = report["totals"]
        for name in FIGURES:
            assert totals[name] == sum(c[name] for c in report["conversations"]) == \
                sum(d[name] for d in report["days"]), name
        assert totals["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in report["conversations"]))
        calls = len(llm.requests) + len(llm.classifier_requests)  # demo classifies, then answers: two calls a turn
        assert (totals["conversations"], totals["messages_in"], totals["messages_out"]) == (2, 3, 3)
        assert (totals["model_calls"], totals["prompt_tokens"], totals["completion_tokens"]) == (calls, 11 * calls,
                                                                                                 7 * calls)
        price_in, price_out = DEFAULT_PRICES["gpt-5.4-mini"]
        assert totals["cost_usd"] == pytest.approx(calls * (11 * price_in + 7 * price_out) / 1e6)
        # The other client's usage is its own.
        other = live_app.api(EMPRENDEMY, f"/usage?{period(live_app)}").json()
        assert other["totals"]["messages_in"] == 0 and other["totals"]["cost_usd"] == 0

    def test_one_conversations_figures(self, live_app: RunningApp, graph: FakeGraph):
        answered(live_app, graph, "5491155551101", "hola")
        answered(live_app, graph, "5491155551102", "hola")
        conversation = live_app.conversation(DEMO, "5491155551101")["id"]
        response = live_app.api(DEMO, f"/conversations/{conversation}/usage?{period(live_app)}")
        assert response.status_code == 200, response.text
        mine = response.json()
        listed = live_app.api(DEMO, f"/usage?{period(live_app)}&by=conversation").json()["conversations"]
        [entry] = [c for c in listed if c["conversation_id"] == conversation]
        assert {name: mine["totals"][name] for name in FIGURES} == {name: entry[name] for name in FIGURES}
        assert (mine["conversation_id"], mine["totals"]["messages_in"], mine["totals"]["conversations"]) == \
            (conversation, 1, 1)
        assert live_app.api(EMPRENDEMY, f"/conversations/{conversation}/usage?{period(live_app)}").status_code == 404


class TestBadRequests:
    @pytest.mark.parametrize("query, reason", [
        ("", "from"), ("from=2026-12-01", "to"), ("from=2026-1-01&to=2026-12-01", "YYYY-MM-DD"),
        ("from=2026-02-30&to=2026-03-01", "from"), ("from=1764547200&to=2026-12-01", "YYYY-MM-DD"),
        ("from=2026-12-02&to=2026-12-01", "before"), ("from=2025-01-01&to=2026-12-31", "366"),
        ("from=2026-12-01&to=2026-12-02&by=month", "by"),
    ])
    def test_a_bad_period_is_422_with_the_reason(self, live_app: RunningApp, query: str, reason: str):
        response = live_app.api(DEMO, f"/usage?{query}")
        assert response.status_code == 422, response.text
        assert reason in response.text

    def test_a_year_with_its_leap_day_is_allowed(self, live_app: RunningApp):
        response = live_app.api(DEMO, "/usage?from=2028-01-01&to=2028-12-31")
        assert response.status_code == 200 and len(response.json()["days"]) == 366

    def test_usage_needs_the_clients_key(self, live_app: RunningApp):
        assert live_app.http.get(f"{live_app.url}/api/v1/demo/usage?from=2026-12-01&to=2026-12-01").status_code == 401
        assert live_app.api(DEMO, "/usage?from=2026-12-01&to=2026-12-01", key=EMPRENDEMY.api_key).status_code == 401
