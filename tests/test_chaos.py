"""Chaos: what a store down for a moment must not make the service forget (the chaos run's findings)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.clients import ClientRegistry
from core.conversation.media import MediaReader
from core.conversation.outbox import Outbox
from core.conversation.processor import Processor, ProcessorTiming, Senders
from core.effects.runner import EffectRunner
from core.llm.agent import TurnResult
from core.notify.email import Email
from core.storage.base import Store, StoreUnavailable
from core.storage.records import Claim, Debounce, NewMessage
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage
from tests.core.effects.test_runner import T0 as EFFECTS_T0
from tests.core.effects.test_runner import a_turn_with_emails, registry_for
from tests.core.notify.smtp_server import closed_port
from tests.fakes.clock import ManualClock
from tests.support import new_wamid
from tests.unit.fakes import NO_WAIT_RETRY, T0, FakeSender, ScriptedAgent, instant_pacer, make_client


# What the chaos run found, one piece at a time: a store down for a moment must not make the service forget what it
# already did. Before the fix, a reply WhatsApp had accepted stayed `pending` (its recording failed, and the failed
# lease renewal cancelled the turn) and went out again from the next holder; an email sent but not recorded stayed
# leased for two minutes and then went out again.

class StoreDownAtFirst(SQLiteStore):
    """The real SQLite store whose named calls fail first, as a PostgreSQL outage makes them fail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down: Counter[str] = Counter()  # calls still to fail, by method
        self.before_renewal: Callable[[], None] = lambda: None

    def _outage(self, method: str) -> None:
        if self.down[method] > 0:
            self.down[method] -= 1
            raise StoreUnavailable(f"PostgreSQL: ConnectionRefusedError: {method}")

    async def mark_sent(self, *args: Any, **kwargs: Any) -> None:
        self._outage("mark_sent")
        await super().mark_sent(*args, **kwargs)

    async def renew_lease(self, *args: Any, **kwargs: Any) -> Claim | None:
        self.before_renewal()
        self._outage("renew_lease")
        return await super().renew_lease(*args, **kwargs)

    async def settle_effect(self, *args: Any, **kwargs: Any) -> bool:
        self._outage("settle_effect")
        return await super().settle_effect(*args, **kwargs)


@pytest.fixture
async def flaky_store(tmp_path: Path) -> AsyncIterator[StoreDownAtFirst]:
    store = StoreDownAtFirst(tmp_path / "store.db")
    await store.open()
    yield store
    await store.close()


async def a_claimed_burst(store: Store, clock: ManualClock, lease_seconds: float = 60) -> Claim:
    message = InboundMessage(waba_id="1001", phone_number_id="2001", wamid=new_wamid(), user_key="549", wa_id="549",
                             user_id=None, contact_name="Ana", type="text", text="hola", wa_timestamp=clock.now(),
                             payload={"type": "text"})
    await store.record_inbound("demo", message, Debounce(0, 0), clock.now())
    [claim] = await store.claim_due("unit", clock.now(), lease_seconds, 1)
    return claim


class TestAStoreDownForAMoment:
    @pytest.mark.anyio
    async def test_a_reply_whatsapp_accepted_is_recorded_when_the_store_is_back_not_sent_again(
            self, flaky_store: StoreDownAtFirst):
        clock = ManualClock(T0)
        claim = await a_claimed_burst(flaky_store, clock)
        batch = await flaky_store.pending_batch(claim.conversation.id)
        reply = NewMessage(direction="out", role="assistant", type="text", text="hola, Ana", status="pending")
        stored = await flaky_store.save_turn(claim, batch, "batch-1", [reply], clock.now())
        sender = FakeSender()
        flaky_store.down["mark_sent"] = 2
        assert await Outbox(flaky_store, instant_pacer(), NO_WAIT_RETRY, clock).deliver(
            make_client(), sender, claim.conversation, stored)
        assert sender.bodies == ["hola, Ana"]
        assert await flaky_store.unsent_replies(claim.conversation.id) == []  # nothing left for a second send

    @pytest.mark.anyio
    @pytest.mark.parametrize("renewals_failing, replied", [(1, True), (10, False)])
    async def test_a_turn_goes_on_while_its_lease_lasts_and_stops_before_it_would_end(
            self, flaky_store: StoreDownAtFirst, renewals_failing: int, replied: bool):
        lease = 0.3
        clock = ManualClock(T0)
        claim = await a_claimed_burst(flaky_store, clock, lease)
        flaky_store.down["renew_lease"] = renewals_failing
        flaky_store.before_renewal = lambda: clock.advance(lease * 0.45)  # renewals come every third of the lease

        async def slow_model(turn: Any) -> TurnResult:
            await asyncio.sleep(lease * 1.5)  # several renewals
            return TurnResult(reply="after the outage")

        sender = FakeSender()
        processor = Processor(flaky_store, ClientRegistry([make_client()]), ScriptedAgent(slow_model),
                              Senders(live=sender, sandbox=FakeSender()), MediaReader(flaky_store, None, 1_000_000),
                              Outbox(flaky_store, instant_pacer(), NO_WAIT_RETRY, clock),
                              ProcessorTiming(lease_seconds=lease, retry_seconds=30, typing_refresh_seconds=60,
                                              history_messages=20), clock)
        await asyncio.wait_for(processor.process(claim), 5)
        # One failed renewal leaves two thirds of the lease: the turn answers. A store down for longer would let the
        # lease end unseen: the turn stops before replying, and the batch waits for the next holder.
        assert sender.bodies == (["after the outage"] if replied else [])
        assert (await flaky_store.pending_batch(claim.conversation.id) == []) is replied

    @pytest.mark.anyio
    async def test_an_email_sent_is_recorded_when_the_store_is_back_not_sent_again_after_its_lease(
            self, flaky_store: StoreDownAtFirst):
        sent: list[Email] = []

        class Mailer:
            async def send(self, email: Email) -> dict[str, tuple[int, bytes]]:
                sent.append(email)
                return {}

        conversation_id = await a_turn_with_emails(flaky_store, "Nuevo lead: Ana")
        registry = registry_for(closed_port())
        flaky_store.down["settle_effect"] = 2
        assert await EffectRunner(flaky_store, registry, Mailer(), ManualClock(EFFECTS_T0), owner="a").run_due() == 1
        [effect] = await flaky_store.list_effects("demo", conversation_id)
        assert effect.status == "done"
        later = ManualClock(EFFECTS_T0 + timedelta(hours=1))  # long after the first runner's lease
        assert await EffectRunner(flaky_store, registry, Mailer(), later, owner="b").run_due() == 0
        assert len(sent) == 1
