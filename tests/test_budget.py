"""Credits: past its monthly budget a client's bot answers with its budget message without calling the model, the
conversation is flagged, and staff get one email a month; through the real app, the OpenAI stand-in and SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from core.clock import StartedClock
from core.config import Settings
from core.errors import ConfigError
from core.ops.budget import BUDGET_EMAIL_KEY, month_of
from core.services import open_store
from core.storage.base import Store
from core.storage.records import Intent, NewMessage
from tests.conftest import DEMO, RunningApp
from tests.core.notify.smtp_server import Mailbox, smtp_server
from tests.core.storage.test_store import DEBOUNCE, T0, inbound
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import text_delivery, wait_for

MID_MARCH = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
BUDGET_TEXT = "Se agotó el crédito de este mes"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with smtp_server(box) as port:
        yield box, port


def demo_env(port: int, **budget: str) -> dict[str, str]:
    return {**DEMO.env(), "DEMO_BUDGET_MESSAGE": BUDGET_TEXT, "DEMO_SMTP_HOST": "127.0.0.1",
            "DEMO_SMTP_PORT": str(port), "DEMO_SMTP_SECURITY": "none", "DEMO_SMTP_FROM": "bot@demo.test",
            "DEMO_SMTP_TO": "staff@demo.test", **{f"DEMO_{name.upper()}": value for name, value in budget.items()}}


def start(start_app: Any, graph: FakeGraph, llm: FakeOpenAI, env: dict[str, str], at: datetime) -> RunningApp:
    return start_app(env, clock=StartedClock(at), openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url)


def reply_to(app: RunningApp, graph: FakeGraph, wa_id: str, text: str) -> str:
    """Write as `wa_id` now (by the app's clock) and wait for the bot's answer; its text."""
    before = [c for c in graph.texts() if c.body.get("to") == wa_id]
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, text, timestamp=int(app.clock.now().timestamp()))
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200
    wait_for(lambda: len([c for c in graph.texts() if c.body.get("to") == wa_id]) > len(before)
             and app.settled(DEMO, wa_id), what="the bot's answer")
    return [c for c in graph.texts() if c.body.get("to") == wa_id][-1].body["text"]["body"]


async def budget_emails(settings: Settings) -> int:
    """Budget emails decided so far, read from the app's own database."""
    database = open_store(settings)
    await database.open()
    try:
        return await database.database.read(lambda tx: tx.fetchval(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM effects WHERE key = $1", BUDGET_EMAIL_KEY))
    finally:
        await database.close()


@pytest.mark.parametrize("budget", [{"monthly_budget_tokens": "20"}, {"monthly_budget_usd": "0.00001"}],
                         ids=["tokens", "usd"])
def test_past_the_budget_the_bot_answers_with_the_budget_message_and_staff_get_one_email(
        start_app: Any, graph: FakeGraph, llm: FakeOpenAI, mailbox: tuple[Mailbox, int], budget: dict[str, str]):
    box, port = mailbox
    app = start(start_app, graph, llm, demo_env(port, **budget), MID_MARCH)
    # Within the budget: the model answers (a classifier call and an answer, 36 tokens: past either budget).
    assert reply_to(app, graph, "5491155552001", "hola") != BUDGET_TEXT
    calls = len(llm.requests) + len(llm.classifier_requests)
    assert calls == 2
    # Past it: the budget message, no model call, the conversation flagged; for every conversation of the client.
    assert reply_to(app, graph, "5491155552001", "¿y el precio?") == BUDGET_TEXT
    assert reply_to(app, graph, "5491155552002", "hola") == BUDGET_TEXT
    assert len(llm.requests) + len(llm.classifier_requests) == calls
    for wa_id in ("5491155552001", "5491155552002"):
        conversation = app.conversation(DEMO, wa_id)
        assert conversation["needs_attention"] and "monthly budget" in conversation["attention_reason"]
    # One email for the month, however many turns found the budget spent.
    wait_for(lambda: box.received, what="the budget email")
    [email] = box.received
    assert "Monthly budget reached (2027-03)" in email.message["Subject"] and email.rcpt_tos == ["staff@demo.test"]
    assert anyio.run(budget_emails, app.settings) == 1


def test_a_new_month_starts_a_new_budget(start_app: Any, graph: FakeGraph, llm: FakeOpenAI,
                                         mailbox: tuple[Mailbox, int]):
    box, port = mailbox
    env = demo_env(port, monthly_budget_tokens="20")
    march = start(start_app, graph, llm, env, MID_MARCH)
    reply_to(march, graph, "5491155552101", "hola")
    assert reply_to(march, graph, "5491155552101", "hola de nuevo") == BUDGET_TEXT
    april = start(start_app, graph, llm, env, datetime(2027, 4, 1, 0, 5, tzinfo=UTC))
    calls = len(llm.requests)
    assert reply_to(april, graph, "5491155552101", "¿y ahora?") != BUDGET_TEXT
    assert len(llm.requests) == calls + 1


class TestBudgetEmailOnce:
    pytestmark = pytest.mark.anyio

    async def test_turns_of_several_workers_decide_it_once(self, store: Store):
        """Two conversations' turns (as two workers would store them) carry the month's email: one effect."""
        intent = Intent("email", BUDGET_EMAIL_KEY, {"subject": "s", "body": "b", "reply_to": None},
                        batch="budget:demo:2026-11")
        for n, user in enumerate(["401", "402"]):
            await store.record_inbound("demo", inbound(user=user), DEBOUNCE, T0)
            [claim] = await store.claim_due(f"worker-{n}", T0 + timedelta(seconds=5), 60, 1)
            batch = await store.pending_batch(claim.conversation.id)
            await store.save_turn(claim, batch, f"turn-{n}", [NewMessage(direction="out", role="assistant", text="x",
                                                                          status="pending")], T0, [intent])
        effects = [e for user in ("401", "402") for e in await store.list_effects(
            "demo", (await store.find_conversation("demo", "2001", user)).id)]
        assert [(e.batch_id, e.key) for e in effects] == [("budget:demo:2026-11", BUDGET_EMAIL_KEY)]


def test_the_month_is_the_utc_calendar_month():
    assert month_of(datetime(2027, 2, 28, 23, 0, tzinfo=UTC)) == (datetime(2027, 2, 1).date(), datetime(2027, 2, 28).date())
    # 1 March 01:00 UTC is still February in Bogotá: the month is UTC's.
    assert month_of(datetime(2027, 2, 28, 20, 0, tzinfo=timezone(timedelta(hours=-5))))[0].month == 3
    assert month_of(datetime(2028, 12, 31, 23, 59, tzinfo=UTC))[1] == datetime(2028, 12, 31).date()


def test_a_usd_budget_needs_the_price_of_the_clients_model(monkeypatch: pytest.MonkeyPatch):
    from core.app import create_app
    monkeypatch.setenv("DEMO_MONTHLY_BUDGET_USD", "5")
    monkeypatch.setenv("DEMO_OPENAI_MODEL", "my-local-llama")
    with pytest.raises(ConfigError, match="DEMO_MONTHLY_BUDGET_USD.*my-local-llama.*MODEL_PRICES"):
        create_app(Settings(_env_file=None), env_file=None)
    monkeypatch.setenv("MODEL_PRICES", '{"my-local-llama": {"input": 0, "output": 0}}')
    create_app(Settings(_env_file=None), env_file=None)


@pytest.mark.parametrize("value, message", [
    ("{nope", "MODEL_PRICES: not JSON"), ('{"m": {"input": 1}}', "MODEL_PRICES: 'm': output"),
    ('{"m": {"input": "cheap", "output": 1}}', "MODEL_PRICES: 'm': input"), ('[]', "MODEL_PRICES: must be a JSON object"),
])
def test_bad_model_prices_stop_startup_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, message: str):
    from core.config import load_settings
    monkeypatch.setenv("MODEL_PRICES", value)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(_env_file=None)


@pytest.mark.parametrize("name, value", [("DEMO_MONTHLY_BUDGET_USD", "-1"), ("DEMO_MONTHLY_BUDGET_TOKENS", "0"),
                                         ("DEMO_MONTHLY_BUDGET_TOKENS", "lots")])
def test_a_bad_budget_stops_startup_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    from core.app import create_app
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app(Settings(_env_file=None), env_file=None)
