"""The 24 h window rule and human takeover: handing a conversation over and back, an operator's message (refused
outside the window, refused when WhatsApp refuses), and idle takeovers going back to the bot per client."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.conversation.outbox import Outbox
from core.conversation.takeover import (OutsideWindow, SendRefused, release_idle_takeovers, send_operator_message,
                                        set_mode)
from core.conversation.window import is_within_window
from core.clients import ClientRegistry
from core.errors import NotFound
from tests.fakes.clock import ManualClock
from tests.unit.fakes import NO_WAIT_RETRY, T0, FakeSender, MemoryStore, instant_pacer, make_client, refusal

pytestmark = pytest.mark.anyio


class TestIsWithinWindow:
    @pytest.mark.parametrize(("ago", "is_open"), [(timedelta(0), True), (timedelta(hours=24) - timedelta(seconds=1), True),
                                               (timedelta(hours=24), False), (timedelta(days=3), False)])
    def test_free_form_messages_only_within_24_hours(self, ago: timedelta, is_open: bool) -> None:
        assert is_within_window(T0 - ago, T0) is is_open

    def test_no_message_from_the_user_means_no_window(self) -> None:
        assert is_within_window(None, T0) is False


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def outbox(store: MemoryStore, clock: ManualClock) -> Outbox:
    return Outbox(store, instant_pacer(), NO_WAIT_RETRY, clock)


class TestSetMode:
    async def test_hands_a_conversation_to_an_operator_and_back(self, store: MemoryStore) -> None:
        client = make_client()
        conversation = store.add_conversation(due_at=T0)
        await set_mode(store, client, conversation.id, "human", T0)
        assert store.conversations[conversation.id].mode == "human"
        await set_mode(store, client, conversation.id, "bot", T0)
        assert store.conversations[conversation.id].mode == "bot"

    async def test_another_clients_conversation_is_not_found(self, store: MemoryStore) -> None:
        conversation = store.add_conversation(client="shop")
        with pytest.raises(NotFound):
            await set_mode(store, make_client("demo"), conversation.id, "human", T0)
        assert store.conversations[conversation.id].mode == "bot"


class TestSendOperatorMessage:
    async def test_sends_the_operators_text_and_stores_it_as_sent(self, store: MemoryStore) -> None:
        clock = ManualClock(T0)
        conversation = store.add_conversation(mode="human", last_inbound_at=T0 - timedelta(hours=2))
        sender = FakeSender()
        sent = await send_operator_message(store, outbox(store, clock), make_client(), sender, conversation.id,
                                           "Hi, Ana here", clock.now())
        assert sender.bodies == ["Hi, Ana here"]
        assert (sent.role, sent.status, sent.wamid) == ("operator", "sent", "wamid.out1")
        assert store.conversations[conversation.id].last_operator_at == T0  # the operator is active: no idle release

    async def test_outside_the_window_nothing_is_stored_or_sent(self, store: MemoryStore) -> None:
        clock = ManualClock(T0)
        conversation = store.add_conversation(mode="human", last_inbound_at=T0 - timedelta(hours=25))
        sender = FakeSender()
        with pytest.raises(OutsideWindow) as raised:
            await send_operator_message(store, outbox(store, clock), make_client(), sender, conversation.id,
                                        "too late", clock.now())
        assert raised.value.status_code == 422
        assert sender.attempts == 0 and store.messages == {}

    async def test_a_refusal_is_reported_with_whatsapps_reason(self, store: MemoryStore) -> None:
        clock = ManualClock(T0)
        conversation = store.add_conversation(mode="human", last_inbound_at=T0 - timedelta(hours=1))
        sender = FakeSender(failures=[refusal(131026)])
        with pytest.raises(SendRefused, match="Graph error 131026") as raised:
            await send_operator_message(store, outbox(store, clock), make_client(), sender, conversation.id,
                                        "hello", clock.now())
        assert raised.value.status_code == 502
        [stored] = store.messages.values()
        assert stored.status == "failed"

    async def test_another_clients_conversation_is_not_found(self, store: MemoryStore) -> None:
        clock = ManualClock(T0)
        conversation = store.add_conversation(client="shop")
        sender = FakeSender()
        with pytest.raises(NotFound):
            await send_operator_message(store, outbox(store, clock), make_client("demo"), sender,
                                        conversation.id, "hello", clock.now())
        assert sender.attempts == 0


class TestReleaseIdleTakeovers:
    async def test_each_client_gets_back_conversations_idle_past_its_own_limit(self, store: MemoryStore) -> None:
        clock = ManualClock(T0)
        registry = ClientRegistry([
            make_client("demo", phone_number_ids=["2001"], waba_ids=["1001"], human_idle_minutes=60),
            make_client("shop", phone_number_ids=["2002"], waba_ids=["1002"], human_idle_minutes=120),
        ])
        demo_idle = store.add_conversation(client="demo", mode="human")
        demo_busy = store.add_conversation(client="demo", mode="human")
        shop_idle = store.add_conversation(client="shop", mode="human")
        await set_mode(store, registry.get("demo"), demo_idle.id, "human", T0)
        await set_mode(store, registry.get("shop"), shop_idle.id, "human", T0)
        await set_mode(store, registry.get("demo"), demo_busy.id, "human", T0 + timedelta(minutes=30))
        clock.advance(61 * 60)
        await release_idle_takeovers(store, registry, clock)
        modes = {c.id: c.mode for c in store.conversations.values()}
        assert modes == {demo_idle.id: "bot", demo_busy.id: "human", shop_idle.id: "human"}
        clock.advance(60 * 60)
        await release_idle_takeovers(store, registry, clock)
        assert {c.mode for c in store.conversations.values()} == {"bot"}
