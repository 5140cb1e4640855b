"""Outbox: every part sent once and recorded, the 24 h window checked before each part, Meta's refusals handled by
code (131047 and 190 not retried, the rest of the reply failed, the conversation flagged), transient errors retried."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.clients import SendMode
from core.conversation.outbox import Outbox
from core.conversation.window import OUTSIDE_WINDOW_REASON
from core.retry import RetryPolicy
from core.storage.records import Conversation, StoredMessage
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.pacing import Pacer
from tests.fakes.clock import ManualClock
from tests.unit.fakes import NO_WAIT_RETRY, T0, FakeSender, MemoryStore, instant_pacer, make_client, refusal

pytestmark = pytest.mark.anyio


class Bench:
    def __init__(self, *, last_inbound_minutes_ago: float = 5, parts: int = 3,
                 retry: RetryPolicy = NO_WAIT_RETRY, pacer: Pacer | None = None) -> None:
        self.clock = ManualClock(T0)
        self.store = MemoryStore()
        self.conversation: Conversation = self.store.add_conversation(
            last_inbound_at=T0 - timedelta(minutes=last_inbound_minutes_ago))
        self.parts: list[StoredMessage] = [self.store.add_outbound(self.conversation.id, f"part {n}")
                                           for n in range(1, parts + 1)]
        self.outbox = Outbox(self.store, pacer or instant_pacer(), retry, self.clock)

    async def deliver(self, sender: FakeSender, send_mode: SendMode = "live") -> bool:
        return await self.outbox.deliver(make_client(send_mode=send_mode), sender, self.conversation,
                                         self.parts)

    def status(self, index: int) -> str | None:
        return self.store.messages[self.parts[index].id].status

    def error(self, index: int) -> dict | None:
        return self.store.messages[self.parts[index].id].error


class TestDelivered:
    async def test_every_part_goes_out_once_in_order_and_is_marked_sent(self) -> None:
        bench = Bench()
        sender = FakeSender()
        assert await bench.deliver(sender) is True
        assert sender.bodies == ["part 1", "part 2", "part 3"]
        assert [s.to for s in sender.sent] == ["5491155550001"] * 3
        assert {s.token for s in sender.sent} == {"token-demo"}
        stored = [bench.store.messages[p.id] for p in bench.parts]
        assert [(m.status, m.wamid) for m in stored] == [("sent", "wamid.out1"), ("sent", "wamid.out2"),
                                                        ("sent", "wamid.out3")]
        assert bench.store.flags == []

    async def test_a_sandbox_client_records_sandbox_not_sent(self) -> None:
        bench = Bench(parts=1)
        assert await bench.deliver(FakeSender(), send_mode="sandbox")
        assert bench.status(0) == "sandbox"


class TestWindow:
    async def test_a_closed_window_sends_nothing_and_flags(self) -> None:
        bench = Bench(last_inbound_minutes_ago=24 * 60 + 1)
        sender = FakeSender()
        assert await bench.deliver(sender) is False
        assert sender.attempts == 0
        assert [bench.status(i) for i in range(3)] == ["failed"] * 3
        assert bench.error(0)["code"] == 131047
        assert bench.store.flags == [(bench.conversation.id, OUTSIDE_WINDOW_REASON)]

    async def test_the_window_is_checked_before_each_part(self) -> None:
        bench = Bench(last_inbound_minutes_ago=24 * 60 - 0.5)  # 30 s of window left
        sender = FakeSender(on_send=lambda body: bench.clock.advance(60))  # a slow send outlives the window
        assert await bench.deliver(sender) is False
        assert sender.bodies == ["part 1"]
        assert [bench.status(i) for i in range(3)] == ["sent", "failed", "failed"]
        assert bench.store.flags == [(bench.conversation.id, OUTSIDE_WINDOW_REASON)]


class TestRefusals:
    async def test_a_refused_part_fails_the_rest_and_flags_the_conversation(self) -> None:
        bench = Bench()
        sender = FakeSender(failures=[None, refusal(131026, title="Message undeliverable")])
        assert await bench.deliver(sender) is False
        assert sender.bodies == ["part 1"] and sender.attempts == 2  # the permanent refusal was tried once
        assert [bench.status(i) for i in range(3)] == ["sent", "failed", "failed"]
        assert bench.error(1)["code"] == 131026
        assert "earlier part was refused" in bench.error(2)["message"]
        [(conversation_id, reason)] = bench.store.flags
        assert conversation_id == bench.conversation.id and "131026" in reason

    async def test_meta_saying_the_window_is_closed_is_not_retried(self) -> None:
        bench = Bench(parts=1)
        sender = FakeSender(failures=[refusal(131047)])
        assert await bench.deliver(sender) is False
        assert sender.attempts == 1
        assert bench.status(0) == "failed"
        assert bench.store.flags == [(bench.conversation.id, OUTSIDE_WINDOW_REASON)]

    async def test_a_dead_token_is_not_retried_and_flags(self) -> None:
        bench = Bench(parts=2)
        sender = FakeSender(failures=[refusal(190, status_code=401, title="OAuthException")])
        assert await bench.deliver(sender) is False
        assert sender.attempts == 1
        assert [bench.status(i) for i in range(2)] == ["failed", "failed"]
        [(_, reason)] = bench.store.flags
        assert "code 190" in reason


class TestRetries:
    @pytest.mark.parametrize("transient", [
        refusal(130429, status_code=429),  # throughput
        refusal(131056, status_code=400),  # pair rate limit
        WhatsAppError("Graph API unreachable: ConnectError"),  # never reached Meta
        refusal(None, status_code=503),
    ], ids=["throughput", "pair-rate", "network", "http-503"])
    async def test_a_transient_error_is_retried_and_the_part_sent_once(self, transient: WhatsAppError) -> None:
        bench = Bench(parts=1)
        sender = FakeSender(failures=[transient])
        assert await bench.deliver(sender) is True
        assert sender.attempts == 2 and sender.bodies == ["part 1"]
        assert bench.status(0) == "sent"
        assert bench.store.flags == []

    async def test_gives_up_after_the_policys_attempts_and_flags(self) -> None:
        bench = Bench(parts=2, retry=RetryPolicy(attempts=3, base_seconds=0, max_wait_seconds=0))
        sender = FakeSender(failures=[refusal(130429, status_code=429)] * 5)
        assert await bench.deliver(sender) is False
        assert sender.attempts == 3
        assert [bench.status(i) for i in range(2)] == ["failed", "failed"]
        assert len(bench.store.flags) == 1


async def test_parts_to_one_person_are_paced_by_the_pair_interval() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    pacer = Pacer(per_number_per_second=10, pair_interval_seconds=2, monotonic=lambda: 100.0, sleep=sleep)
    bench = Bench(parts=3, pacer=pacer)
    assert await bench.deliver(FakeSender())
    assert waits == [2.0, 4.0]  # the first part goes at once
