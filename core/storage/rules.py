"""The store's domain rules as pure functions: every adapter applies the same ones (issue 10: rules once)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from core.storage.records import Debounce, NewMessage, status_moves_forward


def settled_at(now: datetime, pending_since: datetime | None, debounce: Debounce) -> tuple[datetime, datetime]:
    """When a burst with a new message at `now` is due, and since when it is pending.

    `debounce.seconds` after its latest message, but never later than `debounce.max_seconds` after its first."""
    since = pending_since or now
    return min(now + timedelta(seconds=debounce.seconds), since + timedelta(seconds=debounce.max_seconds)), since


def applied_statuses(status: str | None, error: Any, reports: Iterable[tuple[str, dict[str, Any] | None]]
                     ) -> tuple[str | None, Any, bool]:
    """A message's status and error after Meta's status reports (in any order): forward only, `failed` final;
    a report that moves it carries its errors, if any. Returns (status, error, changed)."""
    changed = False
    for reported, payload in reports:
        if status_moves_forward(status, reported):
            errors = (payload or {}).get("errors")
            status, error, changed = reported, {"errors": errors} if errors else error, True
    return status, error, changed


def effect_outcome(error: str | None, retry_at: datetime | None) -> str:
    """An effect's status after an attempt: done without an error, pending when it is retried, else failed."""
    if error is None:
        return "done"
    return "pending" if retry_at is not None else "failed"


def kept_after_turn(mode: str, produced: list[NewMessage]) -> list[NewMessage]:
    """What a finished turn stores: all of it, unless an operator took the conversation over while the model was
    thinking; then the steps are kept and the replies dropped (the person answers now)."""
    return produced if mode == "bot" else [item for item in produced if item.direction != "out"]


def stays_due(pending_since: datetime | None, unsent_reply: bool) -> bool:
    """After a turn, the conversation is due again only if messages arrived meanwhile or a reply is still unsent."""
    return pending_since is not None or unsent_reply


def inbound_handling(wants_reply: bool, mode: str, bot_enabled: bool | None) -> tuple[bool, bool]:
    """What becomes of a new message: (answered by the bot, waits for a person because the client's bot is off).

    Only a message that wants a reply, in a conversation the bot holds, is either; no switch stored means on."""
    for_the_bot = wants_reply and mode == "bot"
    off = bot_enabled is not None and not bot_enabled
    return for_the_bot and not off, for_the_bot and off
