"""The usage ledger's SQL: `usage_daily` rows added to in the transactions of what they count, and its sums.

One row per (client, UTC day, conversation, model); messages in and out go to the model "" row. Erasing a person
deletes their conversation, and the foreign key (ON DELETE SET NULL) keeps their rows anonymous: a client's totals
outlive the messages and conversations that made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from core.storage.records import ModelUsage, UsageGrouping, UsageRow
from core.storage.sql import Database, Tx

# Adds deltas to a row, creating it first; `conversations` is set once, by the row that created it.
_ADD = """INSERT INTO usage_daily (client, day, conversation_id, model, conversations, messages_in, messages_out,
                                  model_calls, prompt_tokens, completion_tokens)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
          ON CONFLICT (client, day, conversation_id, model) DO UPDATE SET
              messages_in = usage_daily.messages_in + excluded.messages_in,
              messages_out = usage_daily.messages_out + excluded.messages_out,
              model_calls = usage_daily.model_calls + excluded.model_calls,
              prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
              completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens"""
_SUMS = """SUM(messages_in) AS messages_in, SUM(messages_out) AS messages_out, SUM(model_calls) AS model_calls,
           SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens"""
# Conversations with a message in or out: each once; an erased one (NULL) once per day it was active.
_CONVERSATIONS = {
    "day": "SUM(conversations)",
    "conversation": "CASE WHEN conversation_id IS NULL THEN SUM(conversations) ELSE MAX(conversations) END",
    "total": """COUNT(DISTINCT CASE WHEN conversations > 0 THEN conversation_id END)
                + SUM(CASE WHEN conversation_id IS NULL THEN conversations ELSE 0 END)""",
}
_KEY = {"day": "day", "conversation": "conversation_id", "total": "NULL"}
# Outbound statuses that mean the message went out (to WhatsApp, or to the sandbox).
SENT_STATUSES = frozenset({"sent", "sandbox"})


def utc_day(moment: datetime) -> str:
    """The UTC calendar day of a moment, as the ledger keys it (`YYYY-MM-DD`)."""
    return moment.astimezone(UTC).date().isoformat()


class UsageSQL:
    """Store methods of the usage ledger; mixed into SQLStore, whose transactions call `_count_*`."""

    database: Database

    async def _count_usage(self, tx: Tx, client: str, conversation_id: int, now: datetime, *, model: str = "",
                           messages_in: int = 0, messages_out: int = 0, calls: int = 0, prompt_tokens: int = 0,
                           completion_tokens: int = 0) -> None:
        """Add to the ledger within the caller's transaction, so the count commits with what it counts."""
        await tx.execute(_ADD, client, utc_day(now), conversation_id, model, 0 if model else 1, messages_in,
                         messages_out, calls, prompt_tokens, completion_tokens)

    async def _count_handled(self, tx: Tx, client: str, conversation_id: int, created: Sequence[Any]) -> None:
        """Messages in, counted when handled (answered or given to a person), each on the day it arrived.

        Not on arrival: the acknowledgement is the hot path, and one more statement there costs ~7 % of its store
        time; a message is handled seconds later (the debounce), in a transaction that exists anyway. `created`
        holds the stored `created_at` of each message this transaction handled (None: already handled)."""
        days: dict[str, int] = {}
        for value in created:
            moment = tx.dialect.time(value)
            if moment is not None:
                day = utc_day(moment)
                days[day] = days.get(day, 0) + 1
        for day, count in days.items():
            await tx.execute(_ADD, client, day, conversation_id, "", 1, count, 0, 0, 0, 0)

    async def _count_models(self, tx: Tx, client: str, conversation_id: int, now: datetime,
                            usage: Sequence[ModelUsage]) -> None:
        for item in usage:
            if item.calls or item.prompt_tokens or item.completion_tokens:
                await self._count_usage(tx, client, conversation_id, now, model=item.model, calls=item.calls,
                                        prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens)

    async def _count_sent(self, tx: Tx, message_id: int) -> None:
        """A pending outbound message is going out: one more message out, on the day it was written."""
        lock = f"{tx.dialect.row_lock} OF m" if tx.dialect.row_lock else ""
        row = await tx.fetchrow(
            f"""SELECT m.status, m.direction, m.created_at, m.conversation_id, c.client FROM messages m
                JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1 {lock}""", message_id)
        # Only the first outcome counts: a part recorded again (a retried write) is not a second message.
        if row is not None and row["status"] == "pending" and row["direction"] == "out":
            created = tx.dialect.time(row["created_at"])
            assert created is not None
            await self._count_usage(tx, row["client"], row["conversation_id"], created, messages_out=1)

    async def usage(self, client: str, first: date, last: date, by: UsageGrouping,
                    conversation_id: int | None = None) -> list[UsageRow]:
        args: list[Any] = [client, first.isoformat(), last.isoformat()]
        scope = ""
        if conversation_id is not None:
            args.append(conversation_id)
            scope = "AND conversation_id = $4"
        key = _KEY[by]
        group = f"{key}, model" if by != "total" else "model"
        sql = f"""SELECT {key} AS key, model, {_CONVERSATIONS[by]} AS conversations, {_SUMS} FROM usage_daily
                  WHERE client = $1 AND day >= $2 AND day <= $3 {scope}
                  GROUP BY {group} ORDER BY {group}"""
        rows = await self.database.read(lambda tx: tx.fetch(sql, *args))
        return [UsageRow(key=row["key"], model=row["model"], conversations=int(row["conversations"] or 0),
                         messages_in=int(row["messages_in"] or 0), messages_out=int(row["messages_out"] or 0),
                         model_calls=int(row["model_calls"] or 0), prompt_tokens=int(row["prompt_tokens"] or 0),
                         completion_tokens=int(row["completion_tokens"] or 0)) for row in rows]
