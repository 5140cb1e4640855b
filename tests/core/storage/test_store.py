"""Every Store adapter against a real database (a SQLite file; a PostgreSQL server the tests start): idempotency,
debounce, statuses, leases, batches, history, operators, clients' data. One suite: each test runs on both."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from core.storage.records import ConversationQuery, Debounce, NewMessage
from core.webhook.events import InboundMessage, StatusUpdate
from tests.conftest import StoreFactory

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
DEBOUNCE = Debounce(seconds=3, max_seconds=15)
_ids = itertools.count(1)

def inbound(text: str = "hola", *, user: str = "5491155550001", wamid: str | None = None, at: datetime = T0,
            type: str = "text", client_phone: str = "2001") -> InboundMessage:
    return InboundMessage(waba_id="1001", phone_number_id=client_phone, wamid=wamid or f"wamid.S{next(_ids)}",
                          user_key=user, wa_id=user, user_id=None, contact_name="Ana", type=type, text=text,
                          wa_timestamp=at, payload={"type": type})


def status(wamid: str, name: str, errors: list | None = None) -> StatusUpdate:
    return StatusUpdate(waba_id="1001", phone_number_id="2001", wamid=wamid, status=name, timestamp=T0,
                        recipient="5491155550001", errors=errors or [], payload={"status": name, "errors": errors or []})


async def answer(store: Store, now: datetime, reply_wamid: str = "wamid.OUT", text: str = "ok") -> list:
    """Claim the due conversation, complete its batch with one reply; returns the batch."""
    [claim] = await store.claim_due("owner-a", now, 60, 10)
    batch = await store.pending_batch(claim.conversation.id)
    await complete(store, claim, batch, "batch-1", [NewMessage(direction="out", role="assistant", text=text, status="pending",
                                                               prompt_tokens=10, completion_tokens=5)], now, reply_wamid)
    return batch


async def complete(store: Store, claim, batch, batch_id: str, produced: list[NewMessage], now: datetime,
                   wamid: str | None = None) -> None:
    """A whole turn as the processor does it: save, mark each reply sent, finish."""
    for message in await store.save_turn(claim, batch, batch_id, produced, now):
        await store.mark_sent(message.id, wamid or f"wamid.{message.id}", "sent", None)
    await store.finish_turn(claim, now)


class TestRecordInbound:
    async def test_same_wamid_twice_is_stored_once(self, store: Store):
        first = await store.record_inbound("demo", inbound(wamid="wamid.X"), DEBOUNCE, T0)
        again = await store.record_inbound("demo", inbound(wamid="wamid.X"), DEBOUNCE, T0 + timedelta(seconds=1))
        assert first.is_new and not again.is_new
        assert len(await store.list_messages(first.conversation_id, 100, 0)) == 1

    async def test_debounce_slides_with_each_message_up_to_the_cap(self, store: Store):
        dues = []
        for second in (0, 2, 6, 11, 14):
            result = await store.record_inbound("demo", inbound(at=T0), DEBOUNCE, T0 + timedelta(seconds=second))
            dues.append((result.due_at - T0).total_seconds())
        assert dues == [3, 5, 9, 14, 15]

    async def test_a_person_has_one_conversation_per_client_and_number(self, store: Store):
        a = await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        b = await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        other_user = await store.record_inbound("demo", inbound(user="5491155550009"), DEBOUNCE, T0)
        other_client = await store.record_inbound("emprendemy", inbound(client_phone="2002"), DEBOUNCE, T0)
        assert a.conversation_id == b.conversation_id
        assert len({a.conversation_id, other_user.conversation_id, other_client.conversation_id}) == 3
        assert [c.user_key for c in await store.list_conversations("emprendemy", 10, 0)] == ["5491155550001"]

    async def test_a_reaction_is_stored_but_makes_nothing_due(self, store: Store):
        result = await store.record_inbound("demo", inbound("[reaction 👍]", type="reaction"), DEBOUNCE, T0)
        assert result.is_new and result.due_at is None
        assert await store.pending_batch(result.conversation_id) == []
        assert await store.next_due_at() is None

    async def test_data_survives_reopening_the_store(self, new_store: StoreFactory):
        first = new_store()
        await first.open()
        result = await first.record_inbound("demo", inbound("persisted"), DEBOUNCE, T0)
        await first.close()
        second = new_store()
        await second.open()
        try:
            [message] = await second.pending_batch(result.conversation_id)
            assert message.text == "persisted"
        finally:
            await second.close()


class TestStatuses:
    @pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "read"])))
    async def test_never_move_backwards(self, store: Store, order: tuple[str, ...]):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.OUT1")
        for name in order:
            assert await store.record_status("demo", status("wamid.OUT1", name), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "read"

    @pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "failed"])))
    async def test_failed_is_final_and_keeps_its_error(self, store: Store, order: tuple[str, ...]):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.OUT2")
        error = [{"code": 131047, "title": "Re-engagement message"}]
        for name in order:
            await store.record_status("demo", status("wamid.OUT2", name, error if name == "failed" else None), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "failed"
        assert reply.error == {"errors": error}

    async def test_a_status_that_arrives_before_its_message_is_applied_later(self, store: Store):
        assert not await store.record_status("demo", status("wamid.EARLY", "delivered"), T0)
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.EARLY")
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert reply.status == "delivered"


class TestLeases:
    async def test_nothing_is_claimed_before_it_is_due(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        assert await store.claim_due("a", T0 + timedelta(seconds=2), 60, 10) == []
        assert len(await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)) == 1

    async def test_one_holder_at_a_time_until_the_lease_expires(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        assert await store.claim_due("b", due + timedelta(seconds=59), 60, 10) == []
        assert await store.next_due_at() == due + timedelta(seconds=60)
        [taken] = await store.claim_due("b", due + timedelta(seconds=60), 60, 10)
        assert taken.conversation.id == held.conversation.id and taken.owner == "b"
        assert await store.renew_lease(held, due + timedelta(seconds=61), 60) is None

    async def test_renewal_keeps_the_lease(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        renewed = await store.renew_lease(held, due + timedelta(seconds=50), 60)
        assert renewed is not None
        assert await store.claim_due("b", due + timedelta(seconds=70), 60, 10) == []

    async def test_release_with_retry_makes_it_due_again_later(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        await store.release(held, retry_at=due + timedelta(seconds=30))
        assert await store.claim_due("b", due + timedelta(seconds=29), 60, 10) == []
        assert len(await store.claim_due("b", due + timedelta(seconds=30), 60, 10)) == 1


class TestBatches:
    async def test_batch_is_in_whatsapp_timestamp_order_not_arrival(self, store: Store):
        for text, second in [("tres", 3), ("uno", 1), ("dos", 2)]:
            await store.record_inbound("demo", inbound(text, at=T0 + timedelta(seconds=second)), DEBOUNCE, T0)
        [claim] = await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)
        assert [m.text for m in await store.pending_batch(claim.conversation.id)] == ["uno", "dos", "tres"]

    async def test_completing_stores_the_reply_adds_tokens_and_clears_due(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        batch = await answer(store, T0 + timedelta(seconds=3))
        assert [m.text for m in batch] == ["hola"]
        [conversation] = await store.list_conversations("demo", 1, 0)
        assert conversation.due_at is None
        assert (conversation.prompt_tokens, conversation.completion_tokens) == (10, 5)
        messages = await store.list_messages(result.conversation_id, 10, 0)
        assert [(m.role, m.text, m.batch_id) for m in messages] == [("user", "hola", "batch-1"), ("assistant", "ok", "batch-1")]
        assert all(m.processed_at for m in messages)

    async def test_a_message_arriving_mid_answer_forms_the_next_batch(self, store: Store):
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

    async def test_history_keeps_the_last_messages_oldest_first(self, store: Store):
        for n in range(3):
            now = T0 + timedelta(minutes=n)
            await store.record_inbound("demo", inbound(f"q{n}", at=now), DEBOUNCE, now)
            await answer(store, now + timedelta(seconds=3), reply_wamid=f"wamid.H{n}", text=f"a{n}")
        [conversation] = await store.list_conversations("demo", 1, 0)
        assert [m.text for m in await store.history(conversation.id, 3)] == ["a1", "q2", "a2"]


class TestClientIsolation:
    async def test_a_status_routed_to_another_client_never_touches_this_clients_message(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=3), reply_wamid="wamid.DEMO1")
        assert not await store.record_status("emprendemy", status("wamid.DEMO1", "failed", [{"code": 131047}]), T0)
        [conversation] = await store.list_conversations("demo", 1, 0)
        reply = [m for m in await store.list_messages(conversation.id, 10, 0) if m.direction == "out"][0]
        assert (reply.status, reply.error) == ("sent", None)


class TestMoreInbound:
    async def test_a_message_in_human_mode_is_stored_answered_and_makes_nothing_due(self, store: Store):
        first = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.set_mode("demo", first.conversation_id, "human", T0)
        later = await store.record_inbound("demo", inbound("¿hay alguien?"), DEBOUNCE, T0 + timedelta(seconds=5))
        assert later.is_new and later.due_at is None
        assert await store.pending_batch(first.conversation_id) == []
        assert await store.claim_due("a", T0 + timedelta(minutes=5), 60, 10) == []

    async def test_contact_details_are_kept_when_a_later_webhook_lacks_them(self, store: Store):
        first = inbound("hola")
        await store.record_inbound("demo", first, DEBOUNCE, T0)
        bare = InboundMessage(waba_id="1001", phone_number_id="2001", wamid="wamid.BARE", user_key=first.user_key,
                              wa_id=None, user_id="US.1", contact_name=None, type="text", text="otra", wa_timestamp=T0,
                              payload={"type": "text"})
        result = await store.record_inbound("demo", bare, DEBOUNCE, T0)
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert (conversation.wa_id, conversation.user_id, conversation.contact_name) == (first.wa_id, "US.1", "Ana")

    async def test_last_inbound_at_never_moves_back_for_an_older_late_message(self, store: Store):
        await store.record_inbound("demo", inbound("nuevo", at=T0 + timedelta(minutes=5)), DEBOUNCE, T0)
        result = await store.record_inbound("demo", inbound("viejo", at=T0), DEBOUNCE, T0 + timedelta(seconds=1))
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert conversation.last_inbound_at == T0 + timedelta(minutes=5)

    async def test_text_and_payload_keep_unicode_and_survive_a_nul_character(self, store: Store):
        message = InboundMessage(waba_id="1001", phone_number_id="2001", wamid="wamid.NUL", user_key="549", wa_id="549",
                                 user_id=None, contact_name="Zoë", type="text", text="a\x00b ñandú 🦩",
                                 wa_timestamp=T0, payload={"text": {"body": "a\x00b ñandú 🦩"}, "n": [1, {"x": None}]})
        result = await store.record_inbound("demo", message, DEBOUNCE, T0)
        [stored] = await store.pending_batch(result.conversation_id)
        # Postgres cannot hold NUL in text: it becomes U+FFFD there; everything else is kept as sent.
        assert stored.text.replace("\x00", "\ufffd") == "a\ufffdb ñandú 🦩"
        assert stored.payload["text"]["body"].replace("\x00", "\ufffd") == "a\ufffdb ñandú 🦩"
        assert stored.payload["n"] == [1, {"x": None}]
        assert stored.wa_timestamp == T0 and stored.direction == "in" and stored.role == "user"

    async def test_conversations_are_listed_most_recently_updated_first_and_only_the_clients_own(self, store: Store):
        old = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
        new = await store.record_inbound("demo", inbound(user="2"), DEBOUNCE, T0 + timedelta(seconds=1))
        other = await store.record_inbound("emprendemy", inbound(user="3", client_phone="2002"), DEBOUNCE, T0)
        assert [c.id for c in await store.list_conversations("demo", 10, 0)] == [new.conversation_id, old.conversation_id]
        assert [c.id for c in await store.list_conversations("demo", 1, 1)] == [old.conversation_id]
        assert await store.get_conversation("demo", other.conversation_id) is None
        assert (await store.get_conversation("emprendemy", other.conversation_id)).client == "emprendemy"

    async def test_a_conversation_is_found_by_client_number_and_person(self, store: Store):
        mine = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
        await store.record_inbound("demo", inbound(user="1", client_phone="2003"), DEBOUNCE, T0)
        found = await store.find_conversation("demo", "2001", "1")
        assert (found.id, found.phone_number_id, found.user_key) == (mine.conversation_id, "2001", "1")
        assert await store.find_conversation("demo", "2001", "2") is None
        assert await store.find_conversation("emprendemy", "2001", "1") is None

    async def test_bursts_from_two_stores_at_once_are_each_stored_once(self, store: Store, new_store: StoreFactory):
        second = new_store()
        await second.open()
        try:
            wamids = [f"wamid.C{n}" for n in range(20)]
            deliveries = [(s, wamid) for wamid in wamids for s in (store, second)]  # each delivered twice, racing
            results = await asyncio.gather(*(s.record_inbound("demo", inbound(wamid=w, user=f"u{int(w[7:]) % 4}"),
                                                              DEBOUNCE, T0) for s, w in deliveries))
        finally:
            await second.close()
        assert sum(result.is_new for result in results) == 20
        conversations = await store.list_conversations("demo", 10, 0)
        assert len(conversations) == 4
        assert sum([len(await store.pending_batch(c.id)) for c in conversations]) == 20
        assert all(c.due_at == T0 + timedelta(seconds=3) for c in conversations)


class TestClaims:
    async def due_conversations(self, store: Store, client: str, users: list[str], at: datetime = T0) -> list[int]:
        phone = "2001" if client == "demo" else "2002"
        return [(await store.record_inbound(client, inbound(user=user, client_phone=phone), DEBOUNCE, at)).conversation_id
                for user in users]

    async def test_earliest_due_first_up_to_the_limit(self, store: Store):
        ids = [(await store.record_inbound("demo", inbound(user=f"u{n}"), DEBOUNCE, T0 + timedelta(seconds=n))).conversation_id
               for n in (2, 0, 1)]
        claims = await store.claim_due("a", T0 + timedelta(seconds=10), 60, 2)
        assert [c.conversation.id for c in claims] == [ids[1], ids[2]]
        assert all(c.owner == "a" and c.lease_until == T0 + timedelta(seconds=70) for c in claims)
        assert await store.next_due_at() == T0 + timedelta(seconds=5)

    async def test_per_client_caps_one_clients_share_of_a_claim(self, store: Store):
        demo = await self.due_conversations(store, "demo", ["1", "2", "3"])
        emprendemy = await self.due_conversations(store, "emprendemy", ["4"], at=T0 + timedelta(seconds=1))
        claims = await store.claim_due("a", T0 + timedelta(seconds=10), 60, 10, per_client=2)
        assert sorted(c.conversation.id for c in claims) == sorted(demo[:2] + emprendemy)

    async def test_excluded_clients_are_left_for_later(self, store: Store):
        await self.due_conversations(store, "demo", ["1"])
        emprendemy = await self.due_conversations(store, "emprendemy", ["2"])
        claims = await store.claim_due("a", T0 + timedelta(seconds=10), 60, 10, exclude_clients={"demo"})
        assert [c.conversation.id for c in claims] == emprendemy
        assert len(await store.claim_due("a", T0 + timedelta(seconds=10), 60, 10)) == 1

    async def test_a_conversation_in_human_mode_is_never_claimed(self, store: Store):
        [conversation_id] = await self.due_conversations(store, "demo", ["1"])
        [claim] = await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)
        await store.set_mode("demo", conversation_id, "human", T0 + timedelta(seconds=4))
        await store.release(claim, retry_at=None)
        assert await store.claim_due("b", T0 + timedelta(minutes=5), 60, 10) == []
        assert await store.next_due_at() is None

    async def test_only_the_holder_renews_or_releases(self, store: Store):
        await self.due_conversations(store, "demo", ["1"])
        due = T0 + timedelta(seconds=3)
        [held] = await store.claim_due("a", due, 60, 10)
        impostor = type(held)(held.conversation, "b", held.lease_until)
        assert await store.renew_lease(impostor, due, 60) is None
        await store.release(impostor, retry_at=None)
        await store.finish_turn(impostor, due)
        assert await store.claim_due("c", due + timedelta(seconds=59), 60, 10) == []

    async def test_processes_claiming_at_once_never_share_a_conversation(self, store: Store, new_store: StoreFactory):
        ids = await self.due_conversations(store, "demo", [f"u{n}" for n in range(30)])
        others = [new_store() for _ in range(2)]
        for other in others:
            await other.open()
        try:
            now = T0 + timedelta(seconds=3)
            claimed: list[int] = []
            for _ in range(10):  # rounds of three processes claiming at the same moment, until nothing is left
                rounds = await asyncio.gather(*(s.claim_due(f"owner-{n}", now, 60, 4, per_client=3)
                                                for n, s in enumerate((store, *others))))
                assert all(len(claims) <= 3 for claims in rounds)
                claimed += [claim.conversation.id for claims in rounds for claim in claims]
                if len(claimed) >= 30:
                    break
        finally:
            for other in others:
                await other.close()
        assert len(claimed) == len(set(claimed)) == 30
        assert set(claimed) == set(ids)


class TestTurns:
    async def test_a_takeover_while_the_model_thinks_drops_the_reply_but_keeps_the_steps(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        now = T0 + timedelta(seconds=3)
        [claim] = await store.claim_due("a", now, 60, 10)
        batch = await store.pending_batch(claim.conversation.id)
        await store.set_mode("demo", result.conversation_id, "human", now)
        tool_call = NewMessage(direction="internal", role="assistant", type="tool_calls", text="Dejame ver.",
                               payload={"tool_calls": [{"id": "c1", "name": "hours", "arguments": "{}"}]},
                               prompt_tokens=7, completion_tokens=3)
        reply = NewMessage(direction="out", role="assistant", text="abrimos a las 9", status="pending",
                           prompt_tokens=9, completion_tokens=4)
        assert await store.save_turn(claim, batch, "b1", [tool_call, reply], now) == []
        await store.finish_turn(claim, now)
        messages = await store.list_messages(result.conversation_id, 10, 0)
        assert [(m.direction, m.text) for m in messages] == [("in", "hola"), ("internal", "Dejame ver.")]
        assert messages[1].payload == tool_call.payload
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert (conversation.prompt_tokens, conversation.completion_tokens) == (16, 7)

    async def test_a_reply_stored_but_not_sent_stays_due_until_it_is_sent(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        now = T0 + timedelta(seconds=3)
        [claim] = await store.claim_due("a", now, 60, 10)
        batch = await store.pending_batch(claim.conversation.id)
        parts = [NewMessage(direction="out", role="assistant", text=text, status="pending", category="ventas")
                 for text in ("uno", "dos")]
        stored = await store.save_turn(claim, batch, "b1", parts, now)
        assert [(m.text, m.status, m.batch_id, m.category) for m in stored] == [("uno", "pending", "b1", "ventas"),
                                                                              ("dos", "pending", "b1", "ventas")]
        await store.finish_turn(claim, now)  # the process died before sending: the turn is not over
        assert [m.id for m in await store.unsent_replies(result.conversation_id)] == [m.id for m in stored]
        [again] = await store.claim_due("b", now + timedelta(seconds=1), 60, 10)
        assert await store.pending_batch(again.conversation.id) == []
        for message in stored:
            await store.mark_sent(message.id, f"wamid.sent{message.id}", "sent", None)
        await store.finish_turn(again, now + timedelta(seconds=2))
        assert await store.unsent_replies(result.conversation_id) == []
        assert (await store.get_conversation("demo", result.conversation_id)).due_at is None
        assert (await store.get_message(stored[0].id)).wamid == f"wamid.sent{stored[0].id}"

    async def test_a_refused_send_keeps_its_error(self, store: Store):
        await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        [claim] = await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)
        [reply] = await store.save_turn(claim, await store.pending_batch(claim.conversation.id), "b1",
                                        [NewMessage(direction="out", role="assistant", text="x", status="pending")], T0)
        await store.mark_sent(reply.id, None, "failed", {"code": 131047, "message": "Re-engagement message"})
        stored = await store.get_message(reply.id)
        assert (stored.wamid, stored.status, stored.error) == (None, "failed", {"code": 131047, "message": "Re-engagement message"})

    async def test_update_text_flag_and_get_message(self, store: Store):
        result = await store.record_inbound("demo", inbound("[voice note]", type="audio"), DEBOUNCE, T0)
        [message] = await store.pending_batch(result.conversation_id)
        await store.update_text(message.id, "[voice note] hola, ¿abren hoy?")
        assert (await store.get_message(message.id)).text == "[voice note] hola, ¿abren hoy?"
        assert await store.get_message(message.id + 1000) is None
        await store.flag(result.conversation_id, "fallback sent")
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert (conversation.needs_attention, conversation.attention_reason) == (True, "fallback sent")

    async def test_statuses_racing_the_sends_own_response_are_all_applied(self, store: Store, new_store: StoreFactory):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        [claim] = await store.claim_due("a", T0 + timedelta(seconds=3), 60, 10)
        replies = await store.save_turn(claim, await store.pending_batch(claim.conversation.id), "b1",
                                        [NewMessage(direction="out", role="assistant", text=str(n), status="pending")
                                         for n in range(15)], T0)
        second = new_store()
        await second.open()
        try:
            await asyncio.gather(*(job for reply in replies for job in (
                store.mark_sent(reply.id, f"wamid.R{reply.id}", "sent", None),
                second.record_status("demo", status(f"wamid.R{reply.id}", "delivered"), T0))))
        finally:
            await second.close()
        assert [(await store.get_message(reply.id)).status for reply in replies] == ["delivered"] * 15


class TestOperators:
    async def test_taking_over_answers_what_was_waiting_and_giving_back_does_not_reanswer(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        taken = await store.set_mode("demo", result.conversation_id, "human", T0 + timedelta(seconds=1))
        assert (taken.mode, taken.human_since, taken.last_operator_at, taken.due_at) == (
            "human", T0 + timedelta(seconds=1), T0 + timedelta(seconds=1), None)
        assert await store.pending_batch(result.conversation_id) == []
        back = await store.set_mode("demo", result.conversation_id, "bot", T0 + timedelta(seconds=2))
        assert (back.mode, back.human_since, back.due_at) == ("bot", None, None)
        assert await store.claim_due("a", T0 + timedelta(minutes=1), 60, 10) == []

    async def test_another_clients_conversation_cannot_be_taken_over(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        assert await store.set_mode("emprendemy", result.conversation_id, "human", T0) is None
        assert len(await store.pending_batch(result.conversation_id)) == 1
        assert (await store.get_conversation("demo", result.conversation_id)).mode == "bot"

    async def test_an_operator_message_is_stored_pending_and_counts_as_activity(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.set_mode("demo", result.conversation_id, "human", T0)
        stored = await store.add_operator_message(
            result.conversation_id, NewMessage(direction="out", role="operator", text="Hola, soy Juan", status="pending"),
            T0 + timedelta(minutes=1))
        assert (stored.role, stored.direction, stored.status, stored.text) == ("operator", "out", "pending", "Hola, soy Juan")
        assert stored.processed_at == T0 + timedelta(minutes=1)
        # The request that stored it sends it: a bot turn's resend of unsent replies must never send it again.
        assert await store.unsent_replies(result.conversation_id) == []
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert conversation.last_operator_at == T0 + timedelta(minutes=1)
        assert [m.text for m in await store.list_messages(result.conversation_id, 10, 0)] == ["hola", "Hola, soy Juan"]

    async def test_an_operator_message_still_being_sent_does_not_keep_the_conversation_due(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.add_operator_message(
            result.conversation_id, NewMessage(direction="out", role="operator", text="ya te atiendo", status="pending"),
            T0 + timedelta(seconds=1))
        now = T0 + timedelta(seconds=3)
        [claim] = await store.claim_due("owner-a", now, 60, 10)
        await store.save_turn(claim, await store.pending_batch(result.conversation_id), "b1", [], now)
        await store.finish_turn(claim, now)
        # Only the bot's own unsent replies make it due again (its next holder sends them); else it would be
        # claimed again at once, for ever.
        assert (await store.get_conversation("demo", result.conversation_id)).due_at is None
        assert await store.claim_due("owner-b", now + timedelta(seconds=1), 60, 10) == []

    async def test_idle_takeovers_go_back_to_the_bot_per_client(self, store: Store):
        idle = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
        busy = await store.record_inbound("demo", inbound(user="2"), DEBOUNCE, T0)
        other = await store.record_inbound("emprendemy", inbound(user="3", client_phone="2002"), DEBOUNCE, T0)
        for client, result in (("demo", idle), ("demo", busy), ("emprendemy", other)):
            await store.set_mode(client, result.conversation_id, "human", T0)
        await store.add_operator_message(busy.conversation_id, NewMessage(direction="out", role="operator", text="sigo",
                                                                          status="pending"), T0 + timedelta(hours=1))
        assert await store.release_idle_takeovers("demo", T0 + timedelta(minutes=30)) == 1
        modes = {c.id: c.mode for client in ("demo", "emprendemy") for c in await store.list_conversations(client, 10, 0)}
        assert modes == {idle.conversation_id: "bot", busy.conversation_id: "human", other.conversation_id: "human"}
        assert await store.release_idle_takeovers("demo", T0 + timedelta(minutes=30)) == 0


class TestResolve:
    async def test_resolving_clears_the_flag_and_its_reason(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.flag(result.conversation_id, "fallback sent")
        resolved = await store.resolve("demo", result.conversation_id, T0 + timedelta(minutes=5))
        assert (resolved.needs_attention, resolved.attention_reason, resolved.updated_at) == (
            False, None, T0 + timedelta(minutes=5))
        stored = await store.get_conversation("demo", result.conversation_id)
        assert (stored.needs_attention, stored.attention_reason) == (False, None)

    async def test_another_clients_conversation_stays_flagged(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.flag(result.conversation_id, "fallback sent")
        assert await store.resolve("emprendemy", result.conversation_id, T0) is None
        assert await store.resolve("demo", result.conversation_id + 1000, T0) is None
        assert (await store.get_conversation("demo", result.conversation_id)).needs_attention


class TestConversationList:
    async def ids(self, store: Store, **query) -> list[int]:
        return [c.id for c in await store.list_conversations("demo", 50, 0, ConversationQuery(**query))]

    async def test_filters_by_mode_attention_and_update_time(self, store: Store):
        old = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
        taken = await store.record_inbound("demo", inbound(user="2"), DEBOUNCE, T0 + timedelta(hours=1))
        flagged = await store.record_inbound("demo", inbound(user="3"), DEBOUNCE, T0 + timedelta(hours=2))
        await store.record_inbound("emprendemy", inbound(user="4", client_phone="2002"), DEBOUNCE, T0 + timedelta(hours=3))
        await store.set_mode("demo", taken.conversation_id, "human", T0 + timedelta(hours=1))
        await store.flag(flagged.conversation_id, "fallback sent")
        assert await self.ids(store, mode="human") == [taken.conversation_id]
        assert await self.ids(store, mode="bot") == [flagged.conversation_id, old.conversation_id]
        assert await self.ids(store, needs_attention=True) == [flagged.conversation_id]
        assert await self.ids(store, needs_attention=False) == [taken.conversation_id, old.conversation_id]
        assert await self.ids(store, updated_since=T0 + timedelta(hours=1)) == [flagged.conversation_id,
                                                                                 taken.conversation_id]
        assert await self.ids(store, mode="bot", needs_attention=False) == [old.conversation_id]

    async def test_text_search_looks_at_names_user_keys_and_messages_in_any_case(self, store: Store):
        by_name = await store.record_inbound("demo", inbound("hola", user="5491100000001"), DEBOUNCE, T0)
        by_text = await store.record_inbound("demo", inbound("Quiero el CURSO de Python", user="5491100000002"),
                                             DEBOUNCE, T0 + timedelta(minutes=1))
        await store.record_inbound("emprendemy", inbound("curso", user="5491100000003", client_phone="2002"),
                                   DEBOUNCE, T0)
        assert await self.ids(store, text="curso de PYTHON") == [by_text.conversation_id]
        assert await self.ids(store, text="ana") == [by_text.conversation_id, by_name.conversation_id]
        assert await self.ids(store, text="0000001") == [by_name.conversation_id]
        # LIKE's wildcards in the search are plain characters.
        assert await self.ids(store, text="%") == []
        assert await self.ids(store, text="_") == []

    async def test_active_conversations_come_first_and_can_be_kept_alone(self, store: Store):
        quiet = await store.record_inbound("demo", inbound(user="1"), DEBOUNCE, T0)
        await store.set_mode("demo", quiet.conversation_id, "human", T0)
        answered = await store.record_inbound("demo", inbound(user="2"), DEBOUNCE, T0 + timedelta(minutes=1))
        [claim] = await store.claim_due("a", T0 + timedelta(minutes=2), 60, 10)
        later = T0 + timedelta(hours=20)
        await complete(store, claim, await store.pending_batch(claim.conversation.id), "b1",
                       [NewMessage(direction="out", role="assistant", text="ok", status="pending")], later)
        # Touched later, but with no message since: an operator's resolve is not activity.
        await store.resolve("demo", quiet.conversation_id, T0 + timedelta(hours=30))
        since = T0 + timedelta(hours=10)
        assert await self.ids(store) == [quiet.conversation_id, answered.conversation_id]
        assert await self.ids(store, active_since=since) == [answered.conversation_id, quiet.conversation_id]
        assert await self.ids(store, active_since=since, active=True) == [answered.conversation_id]
        assert await self.ids(store, active_since=since, active=False) == [quiet.conversation_id]
        assert claim.conversation.id == answered.conversation_id


class TestBotSwitch:
    async def test_the_bot_is_on_until_switched_off_per_client(self, store: Store):
        assert await store.bot_enabled("demo")
        assert await store.set_bot_enabled("demo", False, T0) is False
        assert not await store.bot_enabled("demo") and await store.bot_enabled("emprendemy")
        assert await store.set_bot_enabled("demo", True, T0) is True
        assert await store.bot_enabled("demo")

    async def test_while_off_a_message_waits_for_a_person_and_is_not_answered_when_back_on(self, store: Store):
        await store.set_bot_enabled("demo", False, T0)
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        other = await store.record_inbound("emprendemy", inbound("hola", client_phone="2002"), DEBOUNCE, T0)
        conversation = await store.get_conversation("demo", result.conversation_id)
        assert (result.due_at, conversation.due_at, conversation.mode) == (None, None, "bot")
        assert conversation.needs_attention and "bot is off" in conversation.attention_reason
        assert await store.pending_batch(result.conversation_id) == []
        await store.set_bot_enabled("demo", True, T0 + timedelta(seconds=1))
        # Only the other client's conversation was ever due; back on, the demo one answers new messages only.
        [claim] = await store.claim_due("a", T0 + timedelta(minutes=1), 60, 10)
        assert claim.conversation.id == other.conversation_id
        again = await store.record_inbound("demo", inbound("¿hay alguien?"), DEBOUNCE, T0 + timedelta(minutes=2))
        assert [m.text for m in await store.pending_batch(again.conversation_id)] == ["¿hay alguien?"]

    async def test_while_off_a_taken_over_conversation_is_not_flagged(self, store: Store):
        result = await store.record_inbound("demo", inbound("hola"), DEBOUNCE, T0)
        await store.set_mode("demo", result.conversation_id, "human", T0)
        await store.set_bot_enabled("demo", False, T0)
        await store.record_inbound("demo", inbound("sigo"), DEBOUNCE, T0 + timedelta(seconds=1))
        assert not (await store.get_conversation("demo", result.conversation_id)).needs_attention


class TestClientData:
    async def test_documents_are_per_client_and_replaced_whole(self, store: Store):
        assert await store.get_document("demo", "catalog") is None
        await store.put_document("demo", "catalog", {"cursos": [{"nombre": "Café", "precio": 10.5}]}, T0)
        await store.put_document("demo", "catalog", {"cursos": []}, T0 + timedelta(seconds=1))
        await store.put_document("demo", "faq", ["a", "b"], T0)
        assert await store.get_document("demo", "catalog") == {"cursos": []}
        assert await store.get_document("demo", "faq") == ["a", "b"]
        assert await store.get_document("emprendemy", "catalog") is None

    async def test_records_are_kept_in_order_per_client_and_kind(self, store: Store):
        conversation = await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        first = await store.add_record("demo", "lead", {"name": "Ana", "email": "ana@example.com"},
                                       conversation.conversation_id, T0)
        second = await store.add_record("demo", "lead", {"name": "Bea"}, None, T0 + timedelta(seconds=1))
        await store.add_record("demo", "complaint", {"x": 1}, None, T0)
        await store.add_record("emprendemy", "lead", {"name": "Other"}, None, T0)
        records = await store.list_records("demo", "lead", 10, 0)
        assert [(r["id"], r["conversation_id"], r["data"]) for r in records] == [
            (first, conversation.conversation_id, {"name": "Ana", "email": "ana@example.com"}), (second, None, {"name": "Bea"})]
        assert datetime.fromisoformat(records[0]["created_at"]) == T0
        assert [r["id"] for r in await store.list_records("demo", "lead", 10, 1)] == [second]


class TestTurnInputs:
    async def test_one_read_gives_the_unsent_replies_the_batch_and_the_history(self, store: Store):
        first = await store.record_inbound("demo", inbound("uno"), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=5))
        await store.record_inbound("demo", inbound("dos"), DEBOUNCE, T0 + timedelta(seconds=10))
        [claim] = await store.claim_due("owner-a", T0 + timedelta(seconds=20), 60, 10)
        # A processor that died after storing a reply and before sending it: the reply is unsent, a batch pending.
        [unsent] = await store.save_turn(claim, await store.pending_batch(first.conversation_id), "batch-2",
                                         [NewMessage(direction="out", role="assistant", text="ya va", status="pending")],
                                         T0 + timedelta(seconds=20))
        await store.record_inbound("demo", inbound("tres"), DEBOUNCE, T0 + timedelta(seconds=21))

        inputs = await store.turn_inputs(first.conversation_id, 10)

        assert [m.id for m in inputs.unsent] == [unsent.id]
        assert inputs.unsent == await store.unsent_replies(first.conversation_id)
        assert [m.text for m in inputs.batch] == ["tres"]
        assert inputs.batch == await store.pending_batch(first.conversation_id)
        assert [m.text for m in inputs.history] == ["uno", "ok", "dos", "ya va"]
        assert inputs.history == await store.history(first.conversation_id, 10)

    async def test_no_history_is_read_when_nothing_is_pending(self, store: Store):
        first = await store.record_inbound("demo", inbound("uno"), DEBOUNCE, T0)
        await answer(store, T0 + timedelta(seconds=5))
        inputs = await store.turn_inputs(first.conversation_id, 10)
        assert (inputs.unsent, inputs.batch, inputs.history) == ([], [], [])
