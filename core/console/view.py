"""How the console shows conversations and messages: states, colours, bubbles (pure functions, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from core.storage.records import Conversation, StoredMessage

State = Literal["attention", "human", "bot", "waiting"]
STATE_LABELS: dict[State, str] = {"attention": "needs attention", "human": "taken over", "bot": "bot answering",
                                  "waiting": "waiting for the person"}
# WhatsApp's customer-service window: an inbound message within it makes a conversation "active".
ACTIVE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class InboxItem:
    conversation: Conversation
    state: State
    active: bool
    unanswered: bool  # the person wrote after the operator's last action in a taken-over conversation

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def title(self) -> str:
        return self.conversation.contact_name or self.conversation.user_key


def conversation_state(conversation: Conversation) -> State:
    """One state per conversation, the most pressing first."""
    if conversation.needs_attention:
        return "attention"
    if conversation.mode == "human":
        return "human"
    if conversation.due_at is not None:
        return "bot"
    return "waiting"


def inbox_item(conversation: Conversation, now: datetime) -> InboxItem:
    last_in = conversation.last_inbound_at
    # A message stored after the operator's last action moved updated_at past it (WhatsApp's own timestamps are
    # whole seconds, too coarse to compare with the operator's).
    unanswered = conversation.mode == "human" and last_in is not None and \
        (conversation.last_operator_at is None or conversation.updated_at > conversation.last_operator_at)
    return InboxItem(conversation, conversation_state(conversation),
                     last_in is not None and last_in >= now - ACTIVE_WINDOW, unanswered)


@dataclass(frozen=True)
class Bubble:
    message: StoredMessage
    side: Literal["in", "out", "step"]

    @property
    def failure(self) -> str | None:
        return failure_reason(self.message.error) if self.message.status == "failed" else None

    @property
    def author(self) -> str:
        return {"user": "", "assistant": "bot", "operator": "operator"}.get(self.message.role, self.message.role)


def is_dialogue(message: StoredMessage) -> bool:
    """What the person saw or wrote: messages in and out, not the model's steps or internal notes."""
    return message.direction in ("in", "out") and message.role in ("user", "assistant", "operator")


def bubbles(messages: list[StoredMessage], *, internal: bool) -> list[Bubble]:
    """The dialogue as bubbles; with `internal` (admins), the tool calls, results and notes between them."""
    shown = []
    for message in messages:
        if is_dialogue(message):
            shown.append(Bubble(message, "in" if message.direction == "in" else "out"))
        elif internal:
            shown.append(Bubble(message, "step"))
    return shown


def failure_reason(error: dict[str, Any] | None) -> str:
    """Meta's reason for a failed message, in one line (its errors' titles and details, or our own message)."""
    if not error:
        return "failed"
    parts = []
    for item in error.get("errors") or [error]:
        if not isinstance(item, dict):
            continue
        details = (item.get("error_data") or {}).get("details") if isinstance(item.get("error_data"), dict) else None
        text = item.get("title") or item.get("message") or ""
        code = item.get("code")
        parts.append(" ".join(str(part) for part in (f"({code})" if code else "", text, f"— {details}" if details else "")
                              if part).strip())
    return "; ".join(part for part in parts if part) or "failed"
