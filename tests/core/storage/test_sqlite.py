"""The SQLite store against a real file: idempotency, debounce, statuses, leases, batches, history."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.storage.records import Debounce, NewMessage
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage, StatusUpdate

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
DEBOUNCE = Debounce(seconds=3, max_seconds=15)
_ids = itertools.count(1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    await opened.open()
    yield opened
    await opened.close()


def inbound(text: str = "hola", *, user: str = "5491155550001", wamid: str | None = None, at: datetime = T0,
            type: str = "text", client_phone: str = "2001") -> InboundMessage:
    return InboundMessage(waba_id="1001", phone_number_id=client_phone, wamid=wamid or f"wamid.S{next(_ids)}",
                          user_key=user, wa_id=user, user_id=None, contact_name="Ana", type=type, text=text,
                          wa_timestamp=at, payload={"type": type})


def status(wamid: str, name: str, errors: list | None = None) -> StatusUpdate:
    return StatusUpdate(waba_id="1001", phone_number_id="2001", wamid=wamid, status=name, timestamp=T0,
                        recipient="5491155550001", errors=errors or [], payload={"status": name, "errors": errors or []})


async def answer(store: SQLiteStore, now: datetime, reply_wamid: str = "wamid.OUT", text: str = "ok") -> list:
    """Claim the due conversation, complete its batch with one reply; returns the batch."""
    [claim] = await store.claim_due("owner-a", now, 60, 10)
    batch = await store.pending_batch(claim.conversation.id)
    await complete(store, claim, batch, "batch-1", [NewMessage(direction="out", role="assistant", text=text, status="pending",
                                                               prompt_tokens=10, completion_tokens=5)], now, reply_wamid)
    return batch


async def complete(store: SQLiteStore, claim, batch, batch_id: str, produced: list[NewMessage], now: datetime,
                   wamid: str | None = None) -> None:
    """A whole turn as the processor does it: save, mark each reply sent, finish."""
    for message in await store.save_turn(claim, batch, batch_id, produced, now):
        await store.mark_sent(message.id, wamid or f"wamid.{message.id}", "sent", None)
    await store.finish_turn(claim, now)


class TestRecordInbound:
    async def test_same_wamid_twice_is_stored_once(self, store: SQLiteStore):
        first = await store.record_inbound("demo", inbound(wamid="wamid.X"), DEBOUNCE, T0)
        again = await store.record_inbound("demo", inbound(wamid="wamid.X"), DEBOUNCE, T0 + timedelta(seconds=1))
        assert first.is_new and not again.is_new
        assert len(await store.list_messages(first.conversation_id, 100, 0)) == 1

    async def test_debounce_slides_with_each_message_up_to_the_cap(self, store: SQLiteStore):
        dues = []
        for second in (0, 2, 6, 11, 14):
            result = await store.record_inbound("demo", inbound(at=T0), DEBOUNCE, T0 + timedelta(seconds=second))
            dues.append((result.due_at - T0).total_seconds())
        assert dues == [3, 5, 9, 14, 15]

    async def test_a_person_has_one_conversation_per_client_and_number(self, store: SQLiteStore):
        a = await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        b = await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        other_user = await store.record_inbound("demo", inbound(user="5491155550009"), DEBOUNCE, T0)
        other_client = await store.record_inbound("emprendemy", inbound(client_phone="2002"), DEBOUNCE, T0)
        assert a.conversation_id == b.conversation_id
        assert len({a.conversation_id, other_user.conversation_id, other_client.conversation_id}) == 3
        assert [c.user_key for c in await store.list_conversations("emprendemy", 10, 0)] == ["5491155550001"]

    async def test_a_reaction_is_stored_but_makes_nothing_due(self, store: SQLiteStore):
        result = await store.record_inbound("demo", inbound("[reaction 👍]", type="reaction"), DEBOUNCE, T0)
        assert result.is_new and result.due_at is None
        assert await store.pending_batch(result.conversation_id) == []
        assert await store.next_due_at() is None

    async def test_data_survives_reopening_the_file(self, tmp_path: Path):
        first = SQLiteStore(tmp_path / "reopen.db")
        await first.open()
        result = await first.record_inbound("demo", inbound("persisted"), DEBOUNCE, T0)
        await first.close()
        second = SQLiteStore(tmp_path / "reopen.db")
        await second.open()
        try:
            [message] = await second.pending_batch(result.conversation_id)
            assert message.text == "persisted"
        finally:
            await second.close()


class TestStatuses:
    @pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "read"])))
    async def test_never_move_backwards(self, store: SQLiteStore, order: tuple[str, ...]):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.OUT1")
        for name in order:
            assert await store.record_status("demo", status("wamid.OUT1", name), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "read"

    @pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "failed"])))
    async def test_failed_is_final_and_keeps_its_error(self, store: SQLiteStore, order: tuple[str, ...]):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.OUT2")
        error = [{"code": 131047, "title": "Re-engagement message"}]
        for name in order:
            await store.record_status("demo", status("wamid.OUT2", name, error if name == "failed" else None), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "failed"
        assert reply.error == {"errors": error}

    async def test_a_status_that_arrives_before_its_message_is_applied_later(self, store: SQLiteStore):
        assert not await store.record_status("demo", status("wamid.EARLY", "delivered"), T0)
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.EARLY")
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "delivered"


class TestLeases:
    async def test_nothing_is_claimed_before_it_is_due(self, store: SQLiteStore):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        assert await store.claim_due("a", T0 + timedelta(seconds=2), 60, 10) == []
        assert len(await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)) == 1

    async def test_one_holder_at_a_time_until_the_lease_expires(self, store: SQLiteStore):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        assert await store.claim_due("b", due + timedelta(seconds=59), 60, 10) == []
        assert await store.next_due_at() == due + timedelta(seconds=60)
        [taken] = await store.claim_due("b", due + timedelta(seconds=60), 60, 10)
        assert taken.conversation.id == held.conversation.id and taken.owner == "b"
        assert await store.renew_lease(held, due + timedelta(seconds=61), 60) is None

    async def test_renewal_keeps_the_lease(self, store: SQLiteStore):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        renewed = await store.renew_lease(held, due + timedelta(seconds=50), 60)
        assert renewed is not None
        assert await store.claim_due("b", due + timedelta(seconds=70), 60, 10) == []

    async def test_release_with_retry_makes_it_due_again_later(self, store: SQLiteStore):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        await store.release(held, retry_at=due + timedelta(seconds=30))
        assert await store.claim_due("b", due + timedelta(seconds=29), 60, 10) == []
        assert len(await store.claim_due("b", due + timedelta(seconds=30), 60, 10)) == 1


class TestBatches:
    async def test_batch_is_in_whatsapp_timestamp_order_not_arrival(self, store: SQLiteStore):
        for text, second in [("tres", 3), ("uno", 1), ("dos", 2)]:
            await store.record_inbound("demo", inbound(text, at=T0 + timedelta(seconds=second)), DEBOUNCE, T0)
        [claim] = await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)
        assert [m.text for m in await store.pending_batch(claim.conversation.id)] == ["uno", "dos", "tres"]

    async def test_completing_stores_the_reply_adds_tokens_and_clears_due(self, store: SQLiteStore):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        batch = await answer(store, T0 + timedelta(seconds=3))
        assert [m.text for m in batch] == ["hola"]
        [conversation] = await store.list_conversations("demo", 1, 0)
        assert conversation.due_at is None
        assert (conversation.prompt_tokens, conversation.completion_tokens) == (10, 5)
        messages = await store.list_messages(result.conversation_id, 10, 0)
        assert [(m.role, m.text, m.batch_id) for m in messages] == [("user", "hola", "batch-1"), ("assistant", "ok", "batch-1")]
        assert all(m.processed_at for m in messages)

    async def test_a_message_arriving_mid_answer_forms_the_next_batch(self, store: SQLiteStore):
        result = await store.record_inbound("demo", inbound("primero", at=T0), DEBOUNCE, T0)
        now = T0 + timedelta(seconds=3)
        [claim] = await store.claim_due("a", now, 60, 10)
        batch = await store.pending_batch(claim.conversation.id)
        await store.record_inbound("demo", inbound("segundo", at=now), DEBOUNCE, now)
        reply = NewMessage(direction="out", role="assistant", text="re: primero", status="pending")
        await complete(store, claim, batch, "b1", [reply], now + timedelta(seconds=1))

        [conversation] = await store.list_conversations("demo", 1, 0)
        assert conversation.due_at is not None
        assert [m.text for m in await store.pending_batch(result.conversation_id)] == ["segundo"]
        [next_claim] = await store.claim_due("a", now + timedelta(seconds=10), 60, 10)
        second = await store.pending_batch(next_claim.conversation.id)
        await complete(store, next_claim, second, "b2",
                       [NewMessage(direction="out", role="assistant", text="re: segundo", status="pending")],
                       now + timedelta(seconds=11))
        history = await store.history(result.conversation_id, 10)
        assert [m.text for m in history] == ["primero", "re: primero", "segundo", "re: segundo"]

    async def test_history_keeps_the_last_messages_oldest_first(self, store: SQLiteStore):
        for n in range(3):
            now = T0 + timedelta(minutes=n)
            await store.record_inbound("demo", inbound(f"q{n}", at=now), DEBOUNCE, now)
            await answer(store, now + timedelta(seconds=3), reply_wamid=f"wamid.H{n}", text=f"a{n}")
        [conversation] = await store.list_conversations("demo", 1, 0)
        assert [m.text for m in await store.history(conversation.id, 3)] == ["a1", "q2", "a2"]


class TestClientIsolation:
    async def test_a_status_routed_to_another_client_never_touches_this_clients_message(self, store: SQLiteStore):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.DEMO1")
        assert not await store.record_status("emprendemy", status("wamid.DEMO1", "failed", [{"code": 131047}]), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert (reply.status, reply.error) == ("sent", None)
