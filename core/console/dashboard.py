"""A client's figures for the console's dashboard: today and the last 30 days, from the usage ledger and the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from core.clients import Client
from core.ops.prices import PriceTable
from core.ops.usage import Figures, usage_report
from core.storage.base import Store
from core.whatsapp.formatting import to_whatsapp

PERIOD_DAYS = 30


@dataclass(frozen=True)
class Period:
    label: str
    first: date
    last: date
    usage: Figures
    fallbacks: int

    @property
    def tokens(self) -> int:
        return self.usage.prompt_tokens + self.usage.completion_tokens


def fallback_texts(client: Client) -> list[str]:
    """How a fallback is stored: as written (after repeated failures) or formatted for WhatsApp (an empty answer)."""
    return sorted({client.fallback_message, to_whatsapp(client.fallback_message)})


async def periods(store: Store, prices: PriceTable, client: Client, now: datetime) -> list[Period]:
    """Today and the last 30 days (today included), as UTC days like the usage ledger."""
    today = now.astimezone(UTC).date()
    found = []
    for label, first in (("today", today), ("30d", today - timedelta(days=PERIOD_DAYS - 1))):
        report = await usage_report(store, prices, client.name, first, today)
        since = datetime.combine(first, time(), tzinfo=UTC)
        until = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
        fallbacks = await store.count_bot_replies(client.name, fallback_texts(client), since, until)
        found.append(Period(label, first, today, report.totals, fallbacks))
    return found
