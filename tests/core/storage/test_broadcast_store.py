"""The broadcast store on SQLite and PostgreSQL: recipients claimed by one worker at a time, a send recorded from
its status webhook after a crash (never sent twice), a dead claim's unsent recipient taken again (never skipped),
and erasure removing the person's contact and recipient rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from core.storage.broadcast_records import ContactChange
from core.storage.records import NewMessage
from core.storage.sql_broadcasts import callback_data
from core.webhook.events import StatusUpdate

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PHONE = "1000"
pytestmark = pytest.mark.anyio


def template_message(user_key: str) -> NewMessage:
    return NewMessage(direction="out", role="operator", type="template", text=f"Hola {user_key}",
                      payload={"template": {"name": "saludo"}}, status="pending")


def sent_status(wamid: str, data: str | None) -> StatusUpdate:
    payload = {"id": wamid, "status": "sent", **({"biz_opaque_callback_data": data} if data else {})}
    return StatusUpdate(waba_id="1", phone_number_id=PHONE, wamid=wamid, status="sent", timestamp=T0, recipient=None,
                        errors=[], payload=payload)


async def new_broadcast(store: Store, keys: list[str]):
    return await store.create_broadcast("demo", PHONE, "saludo", "es_AR", ["a"], {"user_keys": keys}, T0, T0)


async def test_two_workers_claim_different_recipients_in_order(store: Store):
    broadcast = await new_broadcast(store, [f"549110000{n}" for n in range(6)])
    first = await store.claim_recipients(broadcast.id, "w1", T0, 60, 4)
    second = await store.claim_recipients(broadcast.id, "w2", T0, 60, 4)
    assert [r.user_key for r in first] == [f"549110000{n}" for n in range(4)]
    assert [r.user_key for r in second] == ["5491100004", "5491100005"]
    assert await store.claim_recipients(broadcast.id, "w3", T0, 60, 4) == []


async def test_a_send_whose_record_was_lost_is_recorded_from_its_status_not_sent_again(store: Store):
    broadcast = await new_broadcast(store, ["5491100001"])
    [recipient] = await store.claim_recipients(broadcast.id, "w1", T0, 60, 10)
    stored = await store.prepare_recipient(broadcast, recipient, template_message(recipient.user_key), T0)
    assert stored is not None and stored.status == "pending"
    # w1 dies after Meta accepted the send; Meta's status names the recipient through the callback data.
    assert await store.record_status("demo", sent_status("wamid.A", callback_data(broadcast.id, recipient.id)), T0)
    later = T0 + timedelta(seconds=61)
    assert await store.claim_recipients(broadcast.id, "w2", later, 60, 10) == []  # recorded: nothing to take again
    counts = await store.broadcast_counts(broadcast.id)
    assert (counts.sent, counts.queued, counts.sending) == (1, 0, 0)
    assert (await store.get_message(stored.id)).wamid == "wamid.A"  # type: ignore[union-attr]
    assert await store.claim_recipients(broadcast.id, "w2", later, 60, 10) == []
    assert (await store.get_broadcast("demo", broadcast.id)).status == "done"  # type: ignore[union-attr]


async def test_a_dead_claims_unsent_recipient_is_taken_again_with_its_message(store: Store):
    broadcast = await new_broadcast(store, ["5491100001"])
    [recipient] = await store.claim_recipients(broadcast.id, "w1", T0, 60, 10)
    stored = await store.prepare_recipient(broadcast, recipient, template_message(recipient.user_key), T0)
    assert await store.claim_recipients(broadcast.id, "w2", T0 + timedelta(seconds=30), 60, 10) == []  # still leased
    later = T0 + timedelta(seconds=61)
    [again] = await store.claim_recipients(broadcast.id, "w2", later, 60, 10)
    resend = await store.prepare_recipient(broadcast, again, template_message(again.user_key), later)
    assert resend is not None and resend.id == stored.id  # the same message, not a second one
    await store.record_recipient(again.id, resend.id, "wamid.B", "sent", None, later)
    assert (await store.broadcast_counts(broadcast.id)).sent == 1
    # A status for a wamid nobody knows, without callback data, changes nothing.
    assert not await store.record_status("demo", sent_status("wamid.X", None), later)


async def test_opted_out_are_skipped_and_erasure_removes_the_person(store: Store):
    broadcast = await new_broadcast(store, ["5491100001"])
    [recipient] = await store.claim_recipients(broadcast.id, "w1", T0, 60, 10)
    stored = await store.prepare_recipient(broadcast, recipient, template_message(recipient.user_key), T0)
    await store.record_recipient(recipient.id, stored.id, "wamid.C", "sent", None, T0)  # type: ignore[union-attr]
    assert await store.update_contact("demo", "5491100001", ContactChange(fields=frozenset({"opted_out", "tags"}),
                                                                          opted_out=True, tags=["vip"]), T0)
    tagged = await store.create_broadcast("demo", PHONE, "saludo", "es_AR", [], {"tags": ["vip"]}, T0, T0)
    [claimed] = await store.claim_recipients(tagged.id, "w1", T0, 60, 10)
    assert claimed.opted_out
    assert await store.prepare_recipient(tagged, claimed, None, T0) is None
    assert (await store.broadcast_counts(tagged.id)).skipped == 1
    await store.erase_contact("demo", "5491100001")
    assert await store.get_contact("demo", "5491100001") is None
    assert (await store.broadcast_counts(broadcast.id)).sent == 0


async def test_an_audience_of_no_one_stores_nothing(store: Store):
    assert await store.create_broadcast("demo", PHONE, "saludo", "es_AR", [], {"tags": ["nadie"]}, T0, T0) is None
    assert await store.list_broadcasts("demo", 10, 0) == []
