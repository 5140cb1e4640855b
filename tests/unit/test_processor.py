"""Processor: one claimed conversation from its pending batch to at most one reply, on the real SQLite store with a
scripted agent and a recording sender. Covers resending unsent replies, fallbacks, operators, hand-overs, the 24 h
window, and the lease (renewed while the model thinks; a lost or cancelled lease never yields a second reply)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.clients import Client, ClientRegistry
from core.conversation.media import MediaReader
from core.conversation.outbox import Outbox
from core.conversation.processor import Processor, ProcessorTiming, Senders
from core.conversation.window import OUTSIDE_WINDOW_REASON
from core.llm.agent import Turn, TurnResult
from core.storage.records import Claim, Conversation, Intent, NewMessage, StoredMessage
from core.storage.base import StoreUnavailable
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage
from core.whatsapp.errors import WhatsAppError
from tests.fakes.clock import ManualClock
from tests.unit.fakes import FALLBACK, NO_WAIT_RETRY, T0, FakeSender, ScriptedAgent, instant_pacer, make_client

pytestmark = pytest.mark.anyio

USER = "5491155550001"
_wamids = itertools.count(1)


class WatchedStore(SQLiteStore):
    """The real SQLite store, telling the test each time a lease was renewed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.renewed = asyncio.Event()

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        renewed = await super().renew_lease(claim, now, lease_seconds)
        self.renewed.set()
        return renewed


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WatchedStore]:
    opened = WatchedStore(tmp_path / "unit.db")
    await opened.open()
    yield opened
    await opened.close()


class Bench:
    """A processor wired to the store, a manual clock, a scripted agent and recording senders."""

    def __init__(self, store: WatchedStore, agent: ScriptedAgent, *, client: Client | None = None,
                 lease_seconds: float = 60, sender: FakeSender | None = None) -> None:
        self.store = store
        self.agent = agent
        self.clock = ManualClock(T0)
        self.client = client or make_client()
        self.lease_seconds = lease_seconds
        self.sender = sender or FakeSender()
        self.sandbox = FakeSender()
        self.kicks = 0  # times the processor asked for its effects to be carried out
        self.processor = Processor(
            store, ClientRegistry([self.client]), agent, Senders(live=self.sender, sandbox=self.sandbox),
            MediaReader(store, None, 1_000_000), Outbox(store, instant_pacer(), NO_WAIT_RETRY, self.clock),
            ProcessorTiming(lease_seconds=lease_seconds, retry_seconds=30, typing_refresh_seconds=60,
                            history_messages=20),
            self.clock, effects=self._kick)

    def _kick(self) -> None:
        self.kicks += 1

    async def receive(self, text: str, *, sent_at: datetime | None = None, client: str = "demo") -> int:
        message = InboundMessage(waba_id="1001", phone_number_id="2001", wamid=f"wamid.in{next(_wamids)}",
                                 user_key=USER, wa_id=USER, user_id=None, contact_name="Ana", type="text", text=text,
                                 wa_timestamp=sent_at or self.clock.now(), payload={"type": "text"})
        result = await self.store.record_inbound(client, message, self.client.debounce, self.clock.now())
        return result.conversation_id

    async def claim(self, owner: str = "unit") -> Claim:
        """Let the burst settle, then lease the conversation as the scheduler would."""
        self.clock.advance(self.client.debounce.seconds)
        [claim] = await self.store.claim_due(owner, self.clock.now(), self.lease_seconds, 10)
        return claim

    async def answer(self, claim: Claim | None = None) -> Claim:
        claim = claim or await self.claim()
        await asyncio.wait_for(self.processor.process(claim), 2)
        return claim

    async def conversation(self, conversation_id: int, client: str = "demo") -> Conversation:
        found = await self.store.get_conversation(client, conversation_id)
        assert found is not None
        return found

    async def outbound(self, conversation_id: int) -> list[StoredMessage]:
        return [m for m in await self.store.list_messages(conversation_id, 100, 0) if m.direction == "out"]


class TestAnswering:
    async def test_a_burst_is_answered_once_with_one_model_call(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="**Hola** Ana", prompt_tokens=12, completion_tokens=4)))
        conversation_id = await bench.receive("hola")
        bench.clock.advance(1)
        await bench.receive("quiero info")
        await bench.answer()
        [turn] = bench.agent.turns
        assert [m.text for m in turn.batch] == ["hola", "quiero info"]
        assert bench.sender.bodies == ["*Hola* Ana"]  # Markdown became WhatsApp formatting
        assert bench.sender.reads[-1][1:] == (turn.batch[-1].wamid, True)  # read receipt with typing indicator
        [reply] = await bench.outbound(conversation_id)
        assert (reply.status, reply.wamid, reply.prompt_tokens) == ("sent", "wamid.out1", 12)
        assert await store.pending_batch(conversation_id) == []
        conversation = await bench.conversation(conversation_id)
        assert conversation.due_at is None and not conversation.needs_attention
        assert (conversation.prompt_tokens, conversation.completion_tokens) == (12, 4)

    async def test_the_next_turn_sees_the_previous_one_as_history(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="first answer"), TurnResult(reply="second answer")))
        await bench.receive("first question")
        await bench.answer()
        await bench.receive("second question")
        await bench.answer()
        assert [m.text for m in bench.agent.turns[1].history] == ["first question", "first answer"]
        assert bench.sender.bodies == ["first answer", "second answer"]

    async def test_a_long_reply_goes_out_in_parts_under_whatsapps_limit(self, store: WatchedStore) -> None:
        long_reply = "\n\n".join(f"Paragraph {n}: " + "word " * 300 for n in range(6))
        bench = Bench(store, ScriptedAgent(TurnResult(reply=long_reply)))
        conversation_id = await bench.receive("tell me everything")
        await bench.answer()
        assert len(bench.sender.bodies) >= 2 and all(len(body) <= 4096 for body in bench.sender.bodies)
        assert bench.sender.bodies[0].startswith("Paragraph 0") and "Paragraph 5" in bench.sender.bodies[-1]
        assert {m.status for m in await bench.outbound(conversation_id)} == {"sent"}

    async def test_a_sandbox_client_replies_through_the_sandbox(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="hi")), client=make_client(send_mode="sandbox"))
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert bench.sandbox.bodies == ["hi"] and bench.sender.sent == []
        assert [m.status for m in await bench.outbound(conversation_id)] == ["sandbox"]

    async def test_a_failed_read_receipt_does_not_cost_the_reply(self, store: WatchedStore) -> None:
        class ReadFails(FakeSender):
            async def mark_read(self, phone_number_id: str, token: str | None, wamid: str, typing: bool) -> None:
                raise WhatsAppError("read receipt refused", code=100, status_code=400)

        bench = Bench(store, ScriptedAgent(TurnResult(reply="still here")), sender=ReadFails())
        await bench.receive("hola")
        await bench.answer()
        assert bench.sender.bodies == ["still here"]


class TestUnsentReplies:
    async def test_a_reply_stored_by_a_dead_processor_goes_out_first_without_a_model_call(
            self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="second reply")))
        conversation_id = await bench.receive("hola")
        dead = await bench.claim(owner="dead")
        batch = await store.pending_batch(conversation_id)
        # The dead processor stored its reply and crashed before sending it.
        await store.save_turn(dead, batch, "batch-dead", [NewMessage(direction="out", role="assistant",
                                                                     text="first reply", status="pending")],
                              bench.clock.now())
        await bench.receive("¿sigues ahí?")
        bench.clock.advance(bench.lease_seconds)  # the dead processor's lease runs out
        await bench.answer()
        assert bench.sender.bodies == ["first reply", "second reply"]
        [turn] = bench.agent.turns  # only the new message was put to the model
        assert [m.text for m in turn.batch] == ["¿sigues ahí?"]
        assert {m.status for m in await bench.outbound(conversation_id)} == {"sent"}

    async def test_a_turn_that_crashed_while_sending_is_retried_without_asking_the_model_again(
            self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="the answer")),
                      sender=FakeSender(failures=[ConnectionResetError("socket closed")]))
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert bench.sender.sent == []
        conversation = await bench.conversation(conversation_id)
        assert conversation.due_at == bench.clock.now() + timedelta(seconds=30)  # released for a later try
        bench.clock.advance(30 - bench.client.debounce.seconds)
        await bench.answer()
        assert bench.sender.bodies == ["the answer"]
        assert len(bench.agent.turns) == 1
        assert (await bench.conversation(conversation_id)).due_at is None


class TestModelTrouble:
    async def test_a_failing_model_sends_the_fallback_and_flags(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TimeoutError("model timed out")))
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert bench.sender.bodies == [FALLBACK]
        conversation = await bench.conversation(conversation_id)
        assert conversation.needs_attention and "TimeoutError" in (conversation.attention_reason or "")
        assert await store.pending_batch(conversation_id) == []  # answered (by the fallback), not retried

    async def test_an_empty_reply_sends_the_fallback(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="")))
        await bench.receive("hola")
        await bench.answer()
        assert bench.sender.bodies == [FALLBACK]


class TestOperators:
    async def test_a_reply_is_dropped_when_an_operator_took_over_meanwhile(self, store: WatchedStore) -> None:
        async def operator_takes_over_while_the_model_thinks(turn: Turn) -> TurnResult:
            await store.set_mode("demo", turn.conversation.id, "human", turn.now)
            return TurnResult(reply="too late")

        bench = Bench(store, ScriptedAgent(operator_takes_over_while_the_model_thinks))
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert bench.sender.sent == []
        assert await bench.outbound(conversation_id) == []
        assert (await bench.conversation(conversation_id)).mode == "human"

    async def test_a_hand_over_sends_the_reply_then_silences_the_bot_and_tells_staff(
            self, store: WatchedStore) -> None:
        handover = Intent("handover", "call_1:1", {"reason": "wants to talk to a person"})
        bench = Bench(store, ScriptedAgent(TurnResult(reply="Te paso con una persona", intents=[handover])),
                      client=make_client(smtp=True))
        conversation_id = await bench.receive("quiero hablar con alguien")
        await bench.answer()
        assert bench.sender.bodies == ["Te paso con una persona"]
        assert (await bench.conversation(conversation_id)).mode == "human"
        [email] = await store.list_effects("demo", conversation_id)
        assert (email.kind, email.status) == ("email", "pending")  # in the outbox, stored with the reply
        assert str(conversation_id) in email.data["subject"]
        assert "wants to talk to a person" in email.data["body"] and USER in email.data["body"]
        assert bench.kicks == 1


class TestWindow:
    async def test_a_late_delivery_outside_the_window_is_not_put_to_the_model_and_is_flagged(
            self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="never")))
        written_at = bench.clock.now()
        bench.clock.advance(25 * 3600)  # Meta delivered it a day late
        conversation_id = await bench.receive("hola", sent_at=written_at)
        await bench.answer()
        assert bench.agent.turns == [] and bench.sender.sent == [] and bench.sender.reads == []
        conversation = await bench.conversation(conversation_id)
        assert conversation.needs_attention and conversation.attention_reason == OUTSIDE_WINDOW_REASON
        assert await store.pending_batch(conversation_id) == [] and conversation.due_at is None


class TestLease:
    async def test_the_lease_is_renewed_while_the_model_thinks(self, store: WatchedStore) -> None:
        lease = 0.06
        stolen: list[Claim] = []

        async def slow_model(turn: Turn) -> TurnResult:
            for _ in range(3):  # 0.15 s of manual time in all: past the first lease, never past a renewed one
                bench.clock.advance(lease * 5 / 6)
                store.renewed.clear()
                await asyncio.wait_for(store.renewed.wait(), 1)
            stolen.extend(await store.claim_due("thief", bench.clock.now(), 60, 10))
            return TurnResult(reply="worth the wait")

        bench = Bench(store, ScriptedAgent(slow_model), lease_seconds=lease)
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert stolen == []
        assert bench.sender.bodies == ["worth the wait"]
        assert (await bench.conversation(conversation_id)).due_at is None

    async def test_a_lost_lease_stops_the_turn_before_it_replies(self, store: WatchedStore) -> None:
        stolen: list[Claim] = []
        cancelled = asyncio.Event()

        async def model_outlived_by_its_lease(turn: Turn) -> TurnResult:
            # Another processor, whose clock says the lease ran out, takes the conversation.
            stolen.extend(await store.claim_due("thief", bench.clock.now() + timedelta(seconds=10), 60, 10))
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return TurnResult(reply="never")

        bench = Bench(store, ScriptedAgent(model_outlived_by_its_lease), lease_seconds=0.06)
        conversation_id = await bench.receive("hola")
        await bench.answer()
        assert cancelled.is_set() and bench.sender.sent == []
        assert len(await store.pending_batch(conversation_id)) == 1  # left for the new holder to answer
        [thief] = stolen
        assert await store.renew_lease(thief, bench.clock.now() + timedelta(seconds=10), 60) is not None

    async def test_a_processor_that_lost_its_lease_while_frozen_sends_no_second_reply(
            self, store: WatchedStore) -> None:
        sender = FakeSender()
        later = Bench(store, ScriptedAgent(TurnResult(reply="from the new holder")), sender=sender)

        async def frozen_past_its_lease(turn: Turn) -> TurnResult:
            # While this process was frozen (a paused dyno) its lease ran out and another processor answered.
            later.clock.advance(2 * first.lease_seconds)
            await later.answer(await later.claim(owner="later"))
            return TurnResult(reply="from the frozen holder")

        first = Bench(store, ScriptedAgent(frozen_past_its_lease), sender=sender)
        await first.receive("hola")
        await first.answer()
        assert sender.bodies == ["from the new holder"]

    async def test_a_cancelled_turn_gives_its_lease_back_at_once(self, store: WatchedStore) -> None:
        started = asyncio.Event()

        async def hanging_model(turn: Turn) -> TurnResult:
            started.set()
            await asyncio.Event().wait()
            return TurnResult(reply="never")

        bench = Bench(store, ScriptedAgent(hanging_model))
        conversation_id = await bench.receive("hola")
        claim = await bench.claim()
        task = asyncio.create_task(bench.processor.process(claim))
        await asyncio.wait_for(started.wait(), 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
        [again] = await store.claim_due("next", bench.clock.now(), 60, 10)  # no waiting for the lease to run out
        assert again.conversation.id == conversation_id
        assert bench.sender.sent == []

    async def test_a_conversation_of_an_unknown_client_is_put_aside_for_an_hour(self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="never")))
        conversation_id = await bench.receive("hola", client="gone")
        await bench.answer()
        assert bench.agent.turns == [] and bench.sender.sent == []
        assert (await bench.conversation(conversation_id, "gone")).due_at == bench.clock.now() + timedelta(hours=1)


class FailingSaves(WatchedStore):
    """The real store, whose save_turn fails (an outage, a reply it cannot hold) the first `failures` times."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def save_turn(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("SQLite: disk I/O error")
        return await super().save_turn(*args, **kwargs)


@pytest.fixture
async def failing(tmp_path: Path) -> AsyncIterator[FailingSaves]:
    opened = FailingSaves(tmp_path / "failing.db", failures=1000)
    await opened.open()
    yield opened
    await opened.close()


class TestEffectsHappenOnce:
    """Issue 9, findings 2-4: a retried or crashed turn never repeats an effect; a committed one always completes."""

    async def test_a_batch_that_keeps_failing_ends_after_three_tries_with_one_fallback_and_a_flag(
            self, failing: FailingSaves) -> None:
        lead = Intent("record", "call_1:1", {"kind": "lead", "data": {"name": "Ana"}, "ref": "L-1"})
        result = TurnResult(reply="Listo", intents=[lead], prompt_tokens=100, completion_tokens=10)
        bench = Bench(failing, ScriptedAgent(result, result, result, result))
        conversation_id = await bench.receive("registrame")
        for attempt in range(3):
            claim = await bench.claim()
            if attempt == 2:
                failing.failures = 1  # the third attempt fails too; the fallback that ends it is stored
            await bench.answer(claim)
            bench.clock.advance(bench.lease_seconds)
        assert len(bench.agent.turns) == 3
        assert bench.sender.bodies == [FALLBACK]  # once, and never "Listo"
        assert await failing.list_records("demo", "lead", 10, 0) == []  # no attempt's lead was kept
        conversation = await bench.conversation(conversation_id)
        assert conversation.needs_attention and "failed 3 times" in conversation.attention_reason
        assert conversation.due_at is None and await failing.pending_batch(conversation_id) == []
        # The tokens of the failed attempts are counted, though none of them stored a turn.
        assert (conversation.prompt_tokens, conversation.completion_tokens) == (300, 30)
        assert await failing.claim_due("later", bench.clock.now() + timedelta(hours=1), 60, 10) == []

    async def test_a_retried_turn_stores_its_lead_and_email_once(self, failing: FailingSaves) -> None:
        failing.failures = 1
        intents = [Intent("record", "call_1:1", {"kind": "lead", "data": {"name": "Ana"}, "ref": "L-1"}),
                   Intent("email", "call_1:2", {"subject": "Nuevo lead", "body": "Ana", "reply_to": None})]
        result = TurnResult(reply="Listo", intents=intents)
        bench = Bench(failing, ScriptedAgent(result, result), client=make_client(smtp=True))
        conversation_id = await bench.receive("registrame")
        await bench.answer()  # the store fails at save_turn: nothing of this attempt is kept
        bench.clock.advance(bench.lease_seconds)
        await bench.answer()
        assert [r["data"] for r in await failing.list_records("demo", "lead", 10, 0)] == [{"name": "Ana"}]
        assert [e.data["subject"] for e in await failing.list_effects("demo", conversation_id)] == ["Nuevo lead"]
        assert bench.sender.bodies == ["Listo"]

    async def test_a_crash_after_the_reply_is_stored_still_hands_over_and_sends_it(self, store: WatchedStore) -> None:
        handover = Intent("handover", "call_1:1", {"reason": "quiere una persona"})
        crashing = FakeSender(failures=[RuntimeError("the process died here")])
        bench = Bench(store, ScriptedAgent(TurnResult(reply="Te paso con alguien", intents=[handover])),
                      client=make_client(smtp=True), sender=crashing)
        conversation_id = await bench.receive("quiero hablar con alguien")
        await bench.answer()
        # Stored in one transaction with the reply: the conversation is a person's, staff will hear of it.
        assert (await bench.conversation(conversation_id)).mode == "human"
        assert [e.kind for e in await store.list_effects("demo", conversation_id)] == ["email"]
        # The next holder sends the stored reply, although the conversation is no longer the bot's.
        bench.clock.advance(bench.lease_seconds)
        await bench.answer()
        assert crashing.bodies == ["Te paso con alguien"]
        assert len(bench.agent.turns) == 1

    async def test_an_operator_message_still_being_sent_is_not_sent_again_by_a_bot_turn(
            self, store: WatchedStore) -> None:
        bench = Bench(store, ScriptedAgent(TurnResult(reply="respuesta del bot")))
        conversation_id = await bench.receive("hola")
        await store.add_operator_message(conversation_id, NewMessage(direction="out", role="operator", type="text",
                                                                     text="soy Juan", status="pending"),
                                         bench.clock.now())
        await bench.answer()
        assert bench.sender.bodies == ["respuesta del bot"]
