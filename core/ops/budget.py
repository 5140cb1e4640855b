"""Credits: a client's optional monthly budget, in USD or tokens, read from the usage ledger before each turn."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from core.clients import Client
from core.ops.prices import PriceTable
from core.storage.base import UsageStore
from core.storage.records import Conversation, Intent

log = logging.getLogger("core.ops")

DEFAULT_BUDGET_MESSAGE = ("Sorry, this assistant cannot answer more messages this month. A person from our team "
                          "will get back to you.")
BUDGET_EMAIL_KEY = "budget:email"


def month_of(now: datetime) -> tuple[date, date]:
    """The first and last day of `now`'s calendar month in UTC."""
    first = now.astimezone(UTC).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def budget_message(client: Client) -> str:
    return client.settings.budget_message or DEFAULT_BUDGET_MESSAGE


class BudgetGuard:
    """Says whether a client is past its monthly budget; clients without one cost no store read."""

    def __init__(self, store: UsageStore, prices: PriceTable) -> None:
        self._store = store
        self._prices = prices

    async def exceeded(self, client: Client, now: datetime) -> str | None:
        """Why the client's bot must not call the model this month (its budget is spent), or None."""
        usd, tokens = client.settings.monthly_budget_usd, client.settings.monthly_budget_tokens
        if usd is None and tokens is None:
            return None
        first, last = month_of(now)
        rows = await self._store.usage(client.name, first, last, "total")
        spent_tokens = sum(row.prompt_tokens + row.completion_tokens for row in rows)
        if tokens is not None and spent_tokens >= tokens:
            return f"monthly budget reached: {spent_tokens} of {tokens} tokens in {first:%Y-%m} (UTC)"
        if usd is not None:
            # Startup refuses a USD budget for a client whose models are unpriced; a model priced nowhere (a tool's
            # own call) is logged by the price table and left out here.
            cost = self._prices.cost((row.model, row.prompt_tokens, row.completion_tokens) for row in rows)
            if cost.priced_usd >= usd:
                return f"monthly budget reached: {cost.priced_usd:.2f} of {usd:.2f} USD in {first:%Y-%m} (UTC)"
        return None


def budget_email(client: Client, conversation: Conversation, reason: str, now: datetime) -> list[Intent]:
    """The staff email of a spent budget: one per client and month (keyed on the month, not the turn)."""
    if client.settings.smtp_config() is None:
        log.warning("notify.no_smtp", extra={"client": client.name, "conversation": conversation.id,
                                             "detail": f"set {client.env_prefix}SMTP_HOST and _SMTP_TO to email staff"})
        return []
    month = f"{now.astimezone(UTC):%Y-%m}"
    body = (f"The bot of {client.name} reached its monthly budget ({reason}).\n\n"
            f"Until the month ends (UTC) or the budget is raised ({client.env_prefix}MONTHLY_BUDGET_USD / "
            f"{client.env_prefix}MONTHLY_BUDGET_TOKENS), every new message is answered with the budget message and "
            f"its conversation is flagged for a person; the first was conversation {conversation.id}.\n"
            f"Usage: GET /api/v1/{client.name}/usage?from={month}-01&to={month_of(now)[1].isoformat()}")
    return [Intent("email", BUDGET_EMAIL_KEY, {"subject": f"[{client.name}] Monthly budget reached ({month})",
                                              "body": body, "reply_to": None}, batch=f"budget:{client.name}:{month}")]
