"""A webhook delivery turned into the events the service acts on, one per message, status or other change."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from core.webhook.payloads import Message, MessagesValue, Status
from core.webhook.shapes import STATUS, TEXT_MESSAGE, VALUE

log = logging.getLogger("core.webhook")

# Types that are recorded but never answered: a reaction or a system notice is not a turn.
SILENT_TYPES = frozenset({"reaction", "system"})

# Levels of objects and arrays kept in a stored message or status (Meta's own go about six deep); deeper parts
# become TOO_DEEP, so reading a conversation back never runs out of recursion.
MAX_PAYLOAD_DEPTH = 32
TOO_DEEP = f"[nested deeper than {MAX_PAYLOAD_DEPTH} levels]"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# How NUL or a lone surrogate can reach a decoded string: as a NUL byte (a UTF-16/32 body: its ASCII has them); as a
# UTF-8-encoded surrogate (json decodes with surrogatepass); or as an escape json leaves unpaired. json pairs a high
# surrogate escape with the low one right after it and nothing else, so an emoji's pair is no hit. Every escape
# alternative starts with a backslash, which lets the regex engine skip to backslashes (~1 us a delivery, not ~7).
_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_UNSTORABLE_ESCAPE = re.compile(rb"""
    \\ (?: \\                                                        # an escaped backslash: what follows is text
         | u0000
         | u[dD][89abAB][0-9a-fA-F]{2} (?! \\u[dD][c-fC-F] )           # a high surrogate no low one follows
         | (?<! \\u[dD][89abAB][0-9a-fA-F]{2} \\ ) u[dD][c-fC-F] )   # a low surrogate no high one precedes
""", re.VERBOSE)


# slots, not frozen: a frozen dataclass sets each field through object.__setattr__ (~0.7 us more per message).
@dataclass(slots=True)
class InboundMessage:
    """A message a person sent to a business number."""

    waba_id: str
    phone_number_id: str
    wamid: str
    user_key: str
    wa_id: str | None
    user_id: str | None
    contact_name: str | None
    type: str
    text: str
    wa_timestamp: datetime | None
    payload: dict[str, Any] = field(repr=False)

    @property
    def wants_reply(self) -> bool:
        return self.type not in SILENT_TYPES


@dataclass(slots=True)
class StatusUpdate:
    """Meta's news about a message the business sent."""

    waba_id: str
    phone_number_id: str
    wamid: str
    status: str
    timestamp: datetime | None
    recipient: str | None
    errors: list[dict[str, Any]]
    payload: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class OtherChange:
    """Any other change (template, quality, account updates, message echoes, value-level errors)."""

    waba_id: str
    phone_number_id: str | None
    field: str
    value: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Malformed:
    """A part of a delivery that cannot be used (no id to key it by); logged, never stored."""

    waba_id: str
    phone_number_id: str | None
    field: str
    detail: str


Event = InboundMessage | StatusUpdate | OtherChange | Malformed


class MalformedDelivery(ValueError):
    """The delivery's envelope (object, entry, changes) is not Meta's shape; `where` names the part, as pydantic would."""

    def __init__(self, where: tuple[str | int, ...]) -> None:
        super().__init__(f"{where} is malformed")
        self.where = where


def delivery_object(document: Mapping[str, Any]) -> str:
    """The delivery's `object` ("" when absent): whatsapp_business_account for everything this service handles."""
    kind = document.get("object", "")
    if type(kind) is not str:
        raise MalformedDelivery(("object",))
    return kind


def parse_events(document: Mapping[str, Any], *, clean: bool = True, quick: bool = True) -> list[Event]:
    """Flatten every entry, change, message and status of a decoded delivery into events, in delivery order.

    Raises MalformedDelivery when an entry or change is not an object of Meta's shape (nothing is parsed then).
    `clean=False` skips clean_text and clean_json, for a delivery whose body needs_cleaning() found nothing in.
    `quick=False` validates every message and status with the models, never through `shapes` (the reference)."""
    events: list[Event] = []
    tidy = clean_json if clean else _as_is
    for entry_at, entry in enumerate(_listed(document, "entry", ())):
        if type(entry) is not dict:
            raise MalformedDelivery(("entry", entry_at))
        waba_id = entry.get("id", "")
        if type(waba_id) is not str:
            raise MalformedDelivery(("entry", entry_at, "id"))
        waba_id = clean_text(waba_id)
        for change_at, change in enumerate(_listed(entry, "changes", ("entry", entry_at))):
            where = ("entry", entry_at, "changes", change_at)
            if type(change) is not dict:
                raise MalformedDelivery(where)
            name, raw = change.get("field", ""), change.get("value", {})
            if type(name) is not str:
                raise MalformedDelivery((*where, "field"))
            if type(raw) is not dict:
                raise MalformedDelivery((*where, "value"))
            if name != "messages":
                value = tidy(raw)
                events.append(OtherChange(waba_id, _phone_number_id(value), clean_text(name), value))
                continue
            events.extend(_messages_change(waba_id, raw, tidy, quick))
    return events


def _listed(parent: Mapping[str, Any], key: str, where: tuple[str | int, ...]) -> list[Any]:
    items = parent.get(key, [])
    if type(items) is not list:
        raise MalformedDelivery((*where, key))
    return items


def needs_cleaning(body: bytes) -> bool:
    """Whether the JSON text `body` may decode to a text clean_text changes or a container clean_json cuts.

    False is certain: no NUL or lone surrogate can be written without the bytes looked for, and a body with no more
    objects and arrays than MAX_PAYLOAD_DEPTH cannot nest deeper. True may be wrong (after an escaped backslash)."""
    return (body.count(b"{") + body.count(b"[") > MAX_PAYLOAD_DEPTH or b"\x00" in body
            or _UTF8_SURROGATE.search(body) is not None or _UNSTORABLE_ESCAPE.search(body) is not None)


def clean_text(text: str) -> str:
    """The text with NUL and each lone surrogate (JSON allows the escape "\\ud800") as U+FFFD: no store keeps them."""
    if not _UNSTORABLE.search(text):
        return text
    return text.replace("\x00", "\ufffd").encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_json(value: Any, levels: int = MAX_PAYLOAD_DEPTH) -> Any:
    """A decoded JSON value with its texts (keys too) cleaned and containers below `levels` levels replaced."""
    if isinstance(value, dict):
        return TOO_DEEP if levels <= 0 else {clean_text(k): clean_json(v, levels - 1) for k, v in value.items()}
    if isinstance(value, list):
        return TOO_DEEP if levels <= 0 else [clean_json(item, levels - 1) for item in value]
    return clean_text(value) if isinstance(value, str) else value


def _as_is(value: Any) -> Any:
    return value


def _phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    phone = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return str(phone) if phone else None


class _Sender(NamedTuple):
    """A contact of a `messages` change: who a message is from."""

    wa_id: str | None
    user_id: str | None
    name: str | None


def _messages_change(waba_id: str, raw: dict[str, Any], tidy: Callable[[Any], Any], quick: bool) -> list[Event]:
    # Each message and status is cleaned on its own, so the depth limit is that of what is stored.
    rest = tidy({k: v for k, v in raw.items() if k not in ("messages", "statuses")})
    if quick and VALUE.fits(rest):
        phone = (rest.get("metadata") or {}).get("phone_number_id") or ""
        senders = [_Sender(c.get("wa_id"), c.get("user_id"), (c.get("profile") or {}).get("name"))
                   for c in rest.get("contacts", ())]
        value_errors = False  # VALUE has no `errors`: a value with them is read by the model
    else:
        try:
            value = MessagesValue.model_validate(rest)
        except ValidationError as error:
            return [Malformed(waba_id, _phone_number_id(rest), "messages",
                              f"bad metadata or contacts: {error.errors()[:1]}")]
        phone = value.metadata.phone_number_id or ""
        senders = [_Sender(c.wa_id, c.user_id, c.profile.name if c.profile else None) for c in value.contacts]
        value_errors = bool(value.errors)
    events: list[Event] = []
    for item in map(tidy, _as_list(raw.get("messages"))):
        if quick and TEXT_MESSAGE.fits(item) and item.get("type") == "text" and "text" in item and item.get("id"):
            events.append(_inbound(waba_id, phone, senders, item["id"], item.get("from"), item.get("from_user_id"),
                                   "text", item["text"].get("body", ""), item.get("timestamp"), item))
            continue
        try:
            message = Message.model_validate(item)
        except ValidationError as error:
            events.append(Malformed(waba_id, phone, "messages", f"message without usable id: {error.errors()[:1]}"))
            continue
        events.append(_inbound(waba_id, phone, senders, message.id, message.from_, message.from_user_id, message.type,
                               describe(message), message.timestamp, item))
    for item in map(tidy, _as_list(raw.get("statuses"))):
        if quick and STATUS.fits(item) and item.get("id") and item.get("status"):
            events.append(StatusUpdate(waba_id, phone, item["id"], item["status"], parse_timestamp(item.get("timestamp")),
                                       item.get("recipient_id") or item.get("recipient_user_id"), [], item))
            continue
        try:
            status = Status.model_validate(item)
        except ValidationError as error:
            events.append(Malformed(waba_id, phone, "statuses", f"status without id or status: {error.errors()[:1]}"))
            continue
        events.append(
            StatusUpdate(
                waba_id=waba_id,
                phone_number_id=phone,
                wamid=status.id,
                status=status.status,
                timestamp=parse_timestamp(status.timestamp),
                recipient=status.recipient_id or status.recipient_user_id,
                errors=[error.model_dump(exclude_none=True) for error in status.errors],
                payload=item,
            )
        )
    if value_errors:
        events.append(OtherChange(waba_id, phone, "messages.errors", {"errors": rest.get("errors")}))
    return events


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _inbound(waba_id: str, phone: str, senders: list[_Sender], wamid: str, from_: str | None,
             from_user_id: str | None, kind: str, text: str, timestamp: str | None,
             raw: dict[str, Any]) -> InboundMessage | Malformed:
    sender = _sender_of(from_, from_user_id, senders)
    wa_id = from_ or (sender.wa_id if sender else None)
    user_id = (sender.user_id if sender else None) or from_user_id
    user_key = wa_id or user_id
    if not user_key:
        return Malformed(waba_id, phone, "messages", f"message {wamid} names no sender (neither wa_id nor user_id)")
    return InboundMessage(waba_id, phone, wamid, user_key, wa_id, user_id, sender.name if sender else None, kind, text,
                          parse_timestamp(timestamp), raw)


def _sender_of(from_: str | None, from_user_id: str | None, senders: list[_Sender]) -> _Sender | None:
    for sender in senders:
        if from_ and sender.wa_id == from_:
            return sender
        if from_user_id and sender.user_id == from_user_id:
            return sender
    return senders[0] if len(senders) == 1 else None


def parse_timestamp(value: str | None) -> datetime | None:
    """Meta's unix-seconds string as an aware UTC datetime; None when absent or unreadable."""
    try:
        return datetime.fromtimestamp(int(value), UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):  # OSError: EOVERFLOW, e.g. at -2**63
        return None


def describe(message: Message) -> str:
    """The message as short plain text, for history and for people reading the conversation."""
    kind = message.type
    if kind == "text" and message.text:
        text = message.text.body
    elif kind in {"image", "video", "document", "sticker", "audio"}:
        media = getattr(message, kind)
        label = "voice note" if kind == "audio" and media is not None and media.voice else kind
        parts = [f"[{label}]"]
        if media is not None and media.filename:
            parts.append(media.filename)
        if media is not None and media.caption:
            parts.append(media.caption)
        text = " ".join(parts)
    elif kind == "location" and message.location:
        loc = message.location
        where = ", ".join(part for part in (loc.name, loc.address) if part)
        text = " ".join(filter(None, ("[location]", where, f"({loc.latitude}, {loc.longitude})")))
    elif kind == "contacts" and message.contacts:
        # The cards are kept as sent (untyped): a name or phone that is not an object is skipped, not a 500.
        names = [str(card["name"].get("formatted_name", "")) for card in message.contacts
                 if isinstance(card.get("name"), dict)]
        phones = [str(phone.get("phone", "")) for card in message.contacts for phone in _as_list(card.get("phones"))
                  if isinstance(phone, dict)]
        text = f"[contact] {', '.join(filter(None, names))} {' '.join(filter(None, phones))}".strip()
    elif kind == "interactive" and message.interactive:
        choice = message.interactive.button_reply or message.interactive.list_reply
        text = " - ".join(filter(None, (choice.title, choice.description))) if choice else "[interactive reply]"
    elif kind == "button" and message.button:
        text = message.button.text or message.button.payload or "[button]"
    elif kind == "reaction" and message.reaction:
        text = f"[reaction {message.reaction.emoji or 'removed'}]"
    elif kind == "order" and message.order:
        items = ", ".join(f"{item.quantity} x {item.product_retailer_id}" for item in message.order.product_items)
        text = f"[order] {items}" + (f" - {message.order.text}" if message.order.text else "")
    elif kind == "system" and message.system:
        text = f"[system] {message.system.body or message.system.type or ''}".strip()
    elif message.errors:
        text = f"[{kind} message: {message.errors[0].title or message.errors[0].message or 'not supported'}]"
    else:
        text = f"[{kind} message]"
    if message.referral and (message.referral.headline or message.referral.source_url):
        text += f" [via ad: {message.referral.headline or message.referral.source_url}]"
    return text
