"""One person's whole footprint in the store and the media archive, made through the store's own writes:
an image archived, a reply sent with its status report, a tool step, a lead and a staff email."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.storage.base import Store
from core.storage.media import MediaArchive
from core.storage.records import Debounce, Intent, NewMessage
from core.webhook.events import InboundMessage, StatusUpdate
from core.whatsapp.client import Media

DEBOUNCE = Debounce(seconds=3, max_seconds=15)
PHOTO = b"\x89PNG-a-person's-photo"


@dataclass(frozen=True)
class Seeded:
    conversation_id: int
    wamids: tuple[str, ...]
    media_path: str | None


async def seed_person(store: Store, archive: MediaArchive, client: str, *, wa_id: str, tag: str, at: datetime,
                      user_id: str | None = None, name: str = "Ana", phone: str = "2001", media: bool = True) -> Seeded:
    """A person writes (an image) at `at`; a turn a minute later answers, records a lead and emails staff."""
    inbound_wamid, reply_wamid = f"wamid.{tag}.in", f"wamid.{tag}.out"
    message = InboundMessage(waba_id="1001", phone_number_id=phone, wamid=inbound_wamid, user_key=wa_id, wa_id=wa_id,
                             user_id=user_id, contact_name=name, type="image", text=f"my photo, {name}",
                             wa_timestamp=at, payload={"from": wa_id, "type": "image", "image": {"caption": name}})
    await store.record_inbound(client, message, DEBOUNCE, at)
    now = at + timedelta(minutes=1)
    [claim] = await store.claim_due("seeder", now, 60, 10)
    batch = await store.pending_batch(claim.conversation.id)
    path = None
    if media:
        path = await archive.save(client, claim.conversation.id, inbound_wamid, Media(PHOTO, "image/png"))
        await store.set_media_path(batch[0].id, path)
    await store.update_text(batch[0].id, f"[image] a receipt from {name}")  # as a description or transcript is
    produced = [
        NewMessage(direction="internal", role="tool", type="tool_result", text=f"lead saved for {wa_id}",
                   payload={"tool_call_id": f"call-{tag}"}),
        NewMessage(direction="out", role="assistant", text=f"Thanks {name}, we call {wa_id}", status="pending",
                   prompt_tokens=120, completion_tokens=30),
    ]
    intents = [
        Intent("record", f"call-{tag}:0", {"kind": "lead", "data": {"phone": wa_id, "name": name}, "ref": f"L-{tag}"}),
        Intent("email", f"call-{tag}:1", {"subject": f"New lead {name}", "body": f"Call {wa_id}: {name}",
                                          "reply_to": None}),
    ]
    for stored in await store.save_turn(claim, batch, f"batch-{tag}", produced, now, intents):
        await store.mark_sent(stored.id, reply_wamid, "sent", None)
    await store.finish_turn(claim, now)
    payload: dict[str, Any] = {"id": reply_wamid, "status": "delivered", "recipient_id": wa_id}
    await store.record_status(client, StatusUpdate(waba_id="1001", phone_number_id=phone, wamid=reply_wamid,
                                                   status="delivered", timestamp=now, recipient=wa_id, errors=[],
                                                   payload=payload), now)
    for effect in await store.claim_effects("runner", now, 60, 100):
        await store.settle_effect(effect, "runner", now)
    return Seeded(claim.conversation.id, (inbound_wamid, reply_wamid), path)
