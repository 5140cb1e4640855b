"""What the store holds, as plain dataclasses shared by every adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Direction = Literal["in", "out", "internal"]
Role = Literal["user", "assistant", "tool", "system", "operator"]
Mode = Literal["bot", "human"]

# Outbound statuses only move forward; "failed" is final whatever arrives after it.
STATUS_RANK = {"pending": 0, "sandbox": 1, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


def status_moves_forward(current: str | None, new: str) -> bool:
    """Whether a status report may replace the current one (Meta delivers them out of order)."""
    if current == "failed":
        return False
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current or "", -1)


@dataclass(frozen=True)
class ConversationQuery:
    """Which of a client's conversations to list; None leaves a filter off. With `active_since`, conversations
    with a message in or out since then are listed first (and `active` keeps only those, or only the others)."""

    mode: Mode | None = None
    needs_attention: bool | None = None
    updated_since: datetime | None = None
    text: str | None = None
    active: bool | None = None
    active_since: datetime | None = None


@dataclass(frozen=True)
class Debounce:
    """How long a burst may settle: `seconds` after the last message, at most `max_seconds` after the first."""

    seconds: float
    max_seconds: float


@dataclass(frozen=True)
class Conversation:
    id: int
    client: str
    phone_number_id: str
    user_key: str
    wa_id: str | None
    user_id: str | None
    contact_name: str | None
    mode: Mode
    due_at: datetime | None
    last_inbound_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    updated_at: datetime
    human_since: datetime | None = None
    last_operator_at: datetime | None = None
    needs_attention: bool = False
    attention_reason: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    wamid: str | None
    direction: Direction
    role: Role
    type: str
    text: str | None
    payload: dict[str, Any] | None
    status: str | None
    error: dict[str, Any] | None
    wa_timestamp: datetime | None
    batch_id: str | None
    processed_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    category: str | None = None
    media_path: str | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message the service itself produced in a turn (reply, tool call, tool result)."""

    direction: Direction
    role: Role
    type: str = "text"
    text: str | None = None
    payload: dict[str, Any] | None = None
    wamid: str | None = None
    status: str | None = None
    error: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    category: str | None = None


@dataclass(frozen=True)
class InboundResult:
    conversation_id: int
    is_new: bool
    due_at: datetime | None


@dataclass(frozen=True)
class TurnInputs:
    """What a turn starts from, read at once: replies stored but not sent, the pending batch, and the history
    before it (empty when nothing is pending)."""

    unsent: list[StoredMessage]
    batch: list[StoredMessage]
    history: list[StoredMessage]


@dataclass(frozen=True)
class Claim:
    """A conversation held by one processor until `lease_until`."""

    conversation: Conversation
    owner: str
    lease_until: datetime


EffectKind = Literal["record", "handover", "email"]


@dataclass(frozen=True)
class Intent:
    """An effect a turn decided (a record, a hand-over, an email): stored in the turn's own transaction.

    `key` is unique within the batch (`<tool call id>:<n>`), so the effect happens once per (batch, tool call).
    Records and hand-overs are written by that transaction itself; emails wait in the effects outbox."""

    kind: EffectKind
    key: str
    data: dict[str, Any]
    # The effect's batch when it is keyed on something other than the turn (the budget email: once per client and
    # month, whichever turn decides it first).
    batch: str | None = None


@dataclass(frozen=True)
class Effect:
    """An effect waiting in the outbox (or done, or failed), claimed by one runner at a time."""

    id: int
    client: str
    conversation_id: int | None
    batch_id: str
    key: str
    kind: EffectKind
    data: dict[str, Any]
    status: str  # pending, done, failed
    attempts: int
    last_error: str | None
    due_at: datetime | None
    created_at: datetime
    done_at: datetime | None = None


@dataclass(frozen=True)
class ModelUsage:
    """What one turn spent on one model: how many calls and their tokens (for the usage ledger)."""

    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int


UsageGrouping = Literal["day", "conversation", "total"]


@dataclass(frozen=True)
class UsageRow:
    """Usage ledger sums for one model within one group: a day (`YYYY-MM-DD`), a conversation (None: erased), or all.

    `model` is "" for what no model did (messages in and out); `conversations` counts conversations with a message
    in or out (once per conversation; an erased one once per day it was active)."""

    key: str | int | None
    model: str
    conversations: int
    messages_in: int
    messages_out: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ClientBacklog:
    """What waits in the store for one client, read when /metrics is scraped."""

    client: str
    due: int = 0  # conversations due now and not answered yet
    oldest_due_at: datetime | None = None  # the earliest due_at among them
    needing_attention: int = 0
    effects_pending: int = 0
