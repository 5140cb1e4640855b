"""What the store can tell about a client's health (the console's admin page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ClientFacts:
    """One client's recent failures and backlog, as the store knows them."""

    failed_sends: int  # outbound messages WhatsApp refused since the time asked
    failed_effects: int  # effects (emails) given up since the time asked
    overdue: int  # conversations whose batch should have been answered before the time asked
    attention: int  # conversations flagged for a person now
    last_send_failure_at: datetime | None = None
    last_send_failure: dict[str, Any] | None = None  # Meta's error, as stored
    last_effect_failure_at: datetime | None = None
    last_effect_failure: str | None = None
