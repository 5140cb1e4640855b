"""The quick reads of plain deliveries (core/webhook/shapes.py) give exactly what the pydantic models give."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from core.webhook.events import Malformed, parse_events
from core.webhook.shapes import STATUS, TEXT_MESSAGE, VALUE
from tests.support import WEBHOOK_DATA, load_delivery

WABA_ID, PHONE_NUMBER_ID = "1001", "2001"
RECORDED = sorted(path.name for path in WEBHOOK_DATA.glob("*.json"))


def value_of(document: dict[str, Any]) -> dict[str, Any]:
    return document["entry"][0]["changes"][0]["value"]


@pytest.mark.parametrize("name", RECORDED)
def test_every_recorded_delivery_parses_the_same_quick_or_through_the_models(name: str):
    document = load_delivery(name, WABA_ID, PHONE_NUMBER_ID)
    assert parse_events(copy.deepcopy(document)) == parse_events(document, quick=False)


def test_the_plain_text_message_and_status_are_read_quick():
    text, status = (value_of(load_delivery(name, WABA_ID, PHONE_NUMBER_ID)) for name in ("text.json", "status_sent.json"))
    for value in (text, status):
        assert VALUE.fits({k: v for k, v in value.items() if k not in ("messages", "statuses")})
    assert TEXT_MESSAGE.fits(text["messages"][0])
    assert STATUS.fits(status["statuses"][0])


def _message(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda value: change(value["messages"][0])


def _status(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda value: change(value["statuses"][0])


# Each bends one part of a plain delivery: the quick read must leave it to the models, whose verdict stands.
BENT_TEXT: dict[str, Callable[[dict[str, Any]], None]] = {
    "id_empty": _message(lambda m: m.update(id="")),
    "id_missing": _message(lambda m: m.pop("id")),
    "id_number": _message(lambda m: m.update(id=7)),
    "timestamp_number": _message(lambda m: m.update(timestamp=1795322400)),
    "type_missing": _message(lambda m: m.pop("type")),
    "type_image": _message(lambda m: m.update(type="image")),
    "text_null": _message(lambda m: m.update(text=None)),
    "text_missing": _message(lambda m: m.pop("text")),
    "body_number": _message(lambda m: m["text"].update(body=5)),
    "body_missing": _message(lambda m: m["text"].pop("body")),
    "from_number": _message(lambda m: m.update({"from": 5491155550001})),
    "unknown_field_kept": _message(lambda m: m.update(novelty={"a": [1, 2]})),
    "with_context": _message(lambda m: m.update(context={"from": "x", "id": "wamid.prev"})),
    "with_referral": _message(lambda m: m.update(referral={"headline": "Promo", "source_url": "https://x"})),
    "with_errors": _message(lambda m: m.update(errors=[{"code": 131051, "title": "Unsupported"}])),
    "message_not_object": lambda v: v.update(messages=["junk", *v["messages"]]),
    "metadata_null": lambda v: v.update(metadata=None),
    "metadata_missing": lambda v: v.pop("metadata"),
    "phone_number": lambda v: v["metadata"].update(phone_number_id=2001),
    "contacts_null": lambda v: v.update(contacts=None),
    "contacts_empty": lambda v: v.update(contacts=[]),
    "contact_not_object": lambda v: v.update(contacts=["x"]),
    "two_contacts": lambda v: v["contacts"].append({"wa_id": "5491155550009", "profile": {"name": "Otro"}}),
    "profile_null": lambda v: v["contacts"][0].update(profile=None),
    "name_number": lambda v: v["contacts"][0]["profile"].update(name=3),
    "wa_id_number": lambda v: v["contacts"][0].update(wa_id=5491155550001),
    "value_errors": lambda v: v.update(errors=[{"code": 1, "title": "x"}]),
    "messaging_product_number": lambda v: v.update(messaging_product=1),
}

BENT_STATUS: dict[str, Callable[[dict[str, Any]], None]] = {
    "id_missing": _status(lambda s: s.pop("id")),
    "status_empty": _status(lambda s: s.update(status="")),
    "status_number": _status(lambda s: s.update(status=3)),
    "timestamp_number": _status(lambda s: s.update(timestamp=1795323900)),
    "recipient_number": _status(lambda s: s.update(recipient_id=5491155550001)),
    "billable_text": _status(lambda s: s["pricing"].update(billable="true")),
    "pricing_null": _status(lambda s: s.update(pricing=None)),
    "pricing_list": _status(lambda s: s.update(pricing=[])),
    "conversation_null": _status(lambda s: s.update(conversation=None)),
    "origin_text": _status(lambda s: s["conversation"].update(origin="service")),
    "with_errors": _status(lambda s: s.update(errors=[{"code": 131026, "title": "Undeliverable"}])),
    "callback_data": _status(lambda s: s.update(biz_opaque_callback_data="b1:42")),
    "only_recipient_user_id": _status(lambda s: s.pop("recipient_id")),
}


@pytest.mark.parametrize(("recorded", "bend"), [("text.json", bend) for bend in BENT_TEXT.values()]
                         + [("status_sent.json", bend) for bend in BENT_STATUS.values()],
                         ids=[f"text-{name}" for name in BENT_TEXT] + [f"status-{name}" for name in BENT_STATUS])
def test_a_bent_part_gets_the_models_verdict(recorded: str, bend: Callable[[dict[str, Any]], None]):
    document = load_delivery(recorded, WABA_ID, PHONE_NUMBER_ID)
    bend(value_of(document))
    document = json.loads(json.dumps(document))  # as decoded from the wire
    assert parse_events(copy.deepcopy(document)) == parse_events(document, quick=False)


def test_the_models_still_refuse_what_they_refused():
    document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
    value_of(document)["messages"][0]["id"] = ""
    [event] = parse_events(document)
    assert isinstance(event, Malformed) and "usable id" in event.detail
