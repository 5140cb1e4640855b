"""The usage report: the ledger's sums per day, in all and per conversation, with their cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from core.ops.prices import PriceTable
from core.storage.base import UsageStore
from core.storage.records import UsageRow

# The longest period one report covers: a year, leap day included.
MAX_REPORT_DAYS = 366


class BadPeriod(ValueError):
    """A period a report cannot cover (reversed, or longer than MAX_REPORT_DAYS)."""


@dataclass(frozen=True)
class Figures:
    conversations: int
    messages_in: int
    messages_out: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    unpriced_models: list[str]


@dataclass(frozen=True)
class Report:
    first: date
    last: date
    days: list[tuple[date, Figures]]
    totals: Figures
    conversations: list[tuple[int | None, Figures]] | None


def check_period(first: date, last: date) -> None:
    """Refuse a reversed period or one over MAX_REPORT_DAYS, saying which."""
    if last < first:
        raise BadPeriod(f"`to` ({last}) is before `from` ({first})")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise BadPeriod(f"at most {MAX_REPORT_DAYS} days per report; asked for {(last - first).days + 1}")


def figures(rows: Iterable[UsageRow], prices: PriceTable) -> Figures:
    """The rows of one group (one per model) summed, and their cost."""
    rows = list(rows)
    cost = prices.cost((row.model, row.prompt_tokens, row.completion_tokens) for row in rows)
    return Figures(conversations=sum(row.conversations for row in rows),
                   messages_in=sum(row.messages_in for row in rows),
                   messages_out=sum(row.messages_out for row in rows),
                   model_calls=sum(row.model_calls for row in rows),
                   prompt_tokens=sum(row.prompt_tokens for row in rows),
                   completion_tokens=sum(row.completion_tokens for row in rows),
                   cost_usd=cost.usd, unpriced_models=list(cost.unpriced))


def _grouped(rows: Iterable[UsageRow]) -> dict[str | int | None, list[UsageRow]]:
    groups: dict[str | int | None, list[UsageRow]] = defaultdict(list)
    for row in rows:
        groups[row.key].append(row)
    return groups


async def usage_report(store: UsageStore, prices: PriceTable, client: str, first: date, last: date, *,
                       conversation_id: int | None = None, by_conversation: bool = False) -> Report:
    """Every day of the period (days without usage as zeros), the totals, and each conversation when asked."""
    check_period(first, last)
    by_day = _grouped(await store.usage(client, first, last, "day", conversation_id))
    days = [(day, figures(by_day.get(day.isoformat(), []), prices))
            for day in (first + timedelta(days=n) for n in range((last - first).days + 1))]
    totals = figures(await store.usage(client, first, last, "total", conversation_id), prices)
    conversations = None
    if by_conversation:
        grouped = _grouped(await store.usage(client, first, last, "conversation", conversation_id))
        conversations = [(key, figures(rows, prices)) for key, rows in grouped.items()]  # type: ignore[misc]
    return Report(first, last, days, totals, conversations)
