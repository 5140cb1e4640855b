"""Meta's 24-hour customer-service window: free-form messages only within 24 h of the user's last message."""

from __future__ import annotations

from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)
# Why a conversation is flagged when its window is closed.
OUTSIDE_WINDOW_REASON = "outside the 24 h window: a template is needed"


def is_within_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether a free-form (non-template) message may be sent now."""
    return last_inbound_at is not None and now - last_inbound_at < WINDOW


def reopen_hint(approved: list[str]) -> str:
    """What could reach the person again: the client's approved templates, named (or that it has none)."""
    if not approved:
        return "the client has no approved template (none synced from WhatsApp)"
    return "approved templates that can reopen it: " + ", ".join(approved)
