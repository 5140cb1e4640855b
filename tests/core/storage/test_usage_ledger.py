"""The usage ledger on both databases: counted in the transactions of what it counts, once, by UTC day, and kept
when a conversation is erased."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from core.ops.prices import PriceTable
from core.ops.usage import usage_report
from core.storage.base import Store
from core.storage.records import ModelUsage, NewMessage
from tests.core.storage.test_store import DEBOUNCE, T0, inbound

pytestmark = pytest.mark.anyio

DAY = T0.date()


async def totals(store: Store, first: date = DAY, last: date = DAY, conversation_id: int | None = None) -> dict:
    rows = await store.usage("demo", first, last, "total", conversation_id)
    return {field: sum(getattr(r, field) for r in rows) for field in
            ("conversations", "messages_in", "messages_out", "model_calls", "prompt_tokens", "completion_tokens")}


async def turn(store: Store, now: datetime, usage: list[ModelUsage], replies: int = 1) -> list:
    """Claim the due conversation and store a turn with `replies` parts and the given model usage."""
    [claim] = await store.claim_due("owner-a", now, 60, 1)
    batch = await store.pending_batch(claim.conversation.id)
    produced = [NewMessage(direction="out", role="assistant", text=f"part {n}", status="pending")
                for n in range(replies)]
    stored = await store.save_turn(claim, batch, f"batch-{now.timestamp()}", produced, now, (), usage)
    return [claim, stored]


async def answer_all(store: Store, now: datetime) -> None:
    """Every due conversation answered by a turn that writes nothing (what handles its messages)."""
    for claim in await store.claim_due("owner-a", now, 60, 100):
        await store.save_turn(claim, await store.pending_batch(claim.conversation.id), f"b-{claim.conversation.id}",
                              [], now)
        await store.finish_turn(claim, now)


class TestCounting:
    async def test_a_message_in_counts_once_when_handled_and_its_conversation_once_a_day(self, store: Store):
        await store.record_inbound("demo", inbound(wamid="wamid.U1"), DEBOUNCE, T0)
        await store.record_inbound("demo", inbound(wamid="wamid.U1"), DEBOUNCE, T0)  # Meta redelivers
        await store.record_inbound("demo", inbound(wamid="wamid.U2"), DEBOUNCE, T0 + timedelta(seconds=1))
        await store.record_inbound("demo", inbound(wamid="wamid.U3", user="5491155550099"), DEBOUNCE, T0)
        assert (await totals(store))["messages_in"] == 0  # waiting for their turn: counted when it stores them
        await answer_all(store, T0 + timedelta(seconds=30))
        await answer_all(store, T0 + timedelta(seconds=40))  # nothing new: nothing counted twice
        figures = await totals(store)
        assert (figures["messages_in"], figures["conversations"]) == (3, 2)
        assert await store.usage("emprendemy", DAY, DAY, "total") == []

    async def test_messages_a_person_answers_count_when_they_take_over_or_on_arrival(self, store: Store):
        first = await store.record_inbound("demo", inbound(wamid="wamid.H1"), DEBOUNCE, T0)
        assert await store.set_mode("demo", first.conversation_id, "human", T0 + timedelta(seconds=1)) is not None
        assert (await totals(store))["messages_in"] == 1
        await store.record_inbound("demo", inbound(wamid="wamid.H2"), DEBOUNCE, T0 + timedelta(seconds=2))
        assert (await totals(store))["messages_in"] == 2  # taken over: handled as it arrives

    async def test_a_turn_adds_its_model_calls_per_model_and_its_sent_parts(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        now = T0 + timedelta(seconds=5)
        claim, stored = await turn(store, now, [ModelUsage("gpt-5.4-nano", 1, 40, 2),
                                                ModelUsage("gpt-5.4-mini", 2, 300, 60)], replies=3)
        await store.mark_sent(stored[0].id, "wamid.O1", "sent", None)
        await store.mark_sent(stored[0].id, "wamid.O1", "sent", None)  # recorded again after a store hiccup
        await store.mark_sent(stored[1].id, "wamid.O2", "sandbox", None)
        await store.mark_sent(stored[2].id, None, "failed", {"code": 131047})  # refused: not a message out
        await store.finish_turn(claim, now)
        by_model = {row.model: row for row in await store.usage("demo", DAY, DAY, "total")}
        assert (by_model["gpt-5.4-mini"].model_calls, by_model["gpt-5.4-mini"].prompt_tokens,
                by_model["gpt-5.4-mini"].completion_tokens) == (2, 300, 60)
        assert (by_model["gpt-5.4-nano"].model_calls, by_model["gpt-5.4-nano"].prompt_tokens) == (1, 40)
        assert (by_model[""].messages_in, by_model[""].messages_out, by_model[""].conversations) == (1, 2, 1)

    async def test_a_failed_attempt_counts_its_model_calls(self, store: Store):
        await store.record_inbound("demo", inbound(), DEBOUNCE, T0)
        [claim] = await store.claim_due("owner-a", T0 + timedelta(seconds=5), 60, 10)
        await store.count_failure(claim, 10, 3, usage=[ModelUsage("gpt-5.4-mini", 1, 10, 3)],
                                  now=T0 + timedelta(seconds=6))
        assert (await totals(store))["model_calls"] == 1
        assert (await totals(store))["prompt_tokens"] == 10

    async def test_days_are_utc(self, store: Store):
        # 23:30 in Buenos Aires is 02:30 the next day in UTC: the ledger counts it on the UTC day.
        evening = datetime(2026, 11, 22, 23, 30, tzinfo=timezone(timedelta(hours=-3)))
        await store.record_inbound("demo", inbound(at=evening), DEBOUNCE, evening)
        await answer_all(store, evening + timedelta(hours=1))
        assert (await totals(store, date(2026, 11, 22), date(2026, 11, 22)))["messages_in"] == 0
        assert (await totals(store, date(2026, 11, 23), date(2026, 11, 23)))["messages_in"] == 1


class TestErasure:
    async def test_deleting_a_conversation_keeps_its_figures_in_the_totals(self, store: Store):
        await store.record_inbound("demo", inbound(wamid="wamid.E1", user="111"), DEBOUNCE, T0)
        kept = await store.record_inbound("demo", inbound(wamid="wamid.E2", user="222"), DEBOUNCE, T0)
        claim, stored = await turn(store, T0 + timedelta(seconds=5), [ModelUsage("gpt-5.4-mini", 1, 100, 10)])
        erased = claim.conversation.id
        assert erased != kept.conversation_id
        await answer_all(store, T0 + timedelta(seconds=6))  # the kept person's message, handled too
        before = await totals(store)

        async def erase(tx):  # what erasure does to a person's rows (the retention/erasure work)
            await tx.execute("DELETE FROM effects WHERE conversation_id = $1", erased)
            await tx.execute("DELETE FROM messages WHERE conversation_id = $1", erased)
            await tx.execute("DELETE FROM conversations WHERE id = $1", erased)

        await store.database.write(erase)  # type: ignore[attr-defined]
        assert await totals(store) == before
        keys = {row.key for row in await store.usage("demo", DAY, DAY, "conversation")}
        assert keys == {None, kept.conversation_id}


class TestReport:
    async def test_the_totals_are_the_sums_over_the_conversations_and_the_days(self, store: Store):
        for n, user in enumerate(["301", "302", "303"]):
            at = T0 + timedelta(days=n % 2, minutes=n)
            await store.record_inbound("demo", inbound(wamid=f"wamid.R{n}", user=user, at=at), DEBOUNCE, at)
            claim, stored = await turn(store, at + timedelta(seconds=5),
                                       [ModelUsage("gpt-5.4-mini", n + 1, 100 * (n + 1), 7), ModelUsage("other", 1, 5, 5)])
            for message in stored:
                await store.mark_sent(message.id, f"wamid.RO{n}", "sent", None)
            await store.finish_turn(claim, at)
        report = await usage_report(store, PriceTable(), "demo", DAY, DAY + timedelta(days=1), by_conversation=True)
        assert report.conversations is not None and len(report.conversations) == 3
        for field in ("conversations", "messages_in", "messages_out", "model_calls", "prompt_tokens",
                      "completion_tokens"):
            total = getattr(report.totals, field)
            assert total == sum(getattr(f, field) for _, f in report.conversations) == \
                sum(getattr(f, field) for _, f in report.days), field
        assert report.totals.conversations == 3 and report.totals.messages_out == 3
        # "other" has no price: the cost is unknown, not 0.
        assert report.totals.cost_usd is None and report.totals.unpriced_models == ["other"]
