"""What the store keeps of contacts and broadcasts, as the code inside the service sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

BroadcastStatus = Literal["scheduled", "running", "paused", "done", "cancelled"]
RecipientState = Literal["queued", "sending", "sent", "failed", "skipped", "cancelled"]


@dataclass(frozen=True)
class Contact:
    """A person who wrote to a client: their conversations' name and number, and what staff keep."""

    user_key: str
    wa_id: str | None
    profile_name: str | None  # WhatsApp's profile name, from the latest conversation
    name: str | None  # set by staff
    email: str | None
    notes: str | None
    tags: list[str]
    opted_out: bool
    opted_out_at: datetime | None
    first_seen: datetime | None
    last_inbound_at: datetime | None

    @property
    def display_name(self) -> str | None:
        return self.name or self.profile_name


@dataclass(frozen=True)
class ContactQuery:
    tag: str | None = None
    text: str | None = None  # in the name, profile name, user key or email, any case


@dataclass(frozen=True)
class ContactChange:
    """A PATCH: only the fields given change (`fields` names them)."""

    fields: frozenset[str]
    name: str | None = None
    email: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    opted_out: bool = False


@dataclass(frozen=True)
class Broadcast:
    id: int
    client: str
    phone_number_id: str
    template: str
    language: str
    parameters: Any
    audience: dict[str, Any]
    status: BroadcastStatus
    due_at: datetime | None
    pauses: int
    last_error: str | None
    total: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Recipient:
    """A recipient claimed to be sent: who, and what the store already holds of the send."""

    id: int
    broadcast_id: int
    user_key: str
    state: RecipientState
    message_id: int | None  # stored before the send; a recipient claimed again reuses it
    conversation_id: int | None
    opted_out: bool
    name: str | None  # the contact's name for {{contact.name}} (staff's, else the profile name)
    email: str | None
    attempts: int
    lease_until: datetime | None = None  # this claim's lease: a send not started well before it is given back


@dataclass(frozen=True)
class BroadcastCounts:
    """Recipients by state; sent ones also by their message's latest status, failed ones by error code."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    failed_by_code: dict[str, int] = field(default_factory=dict)
