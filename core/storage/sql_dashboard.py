"""The store's SQL for the console's client dashboard: what the usage ledger does not count (a mixin of SQLStore)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.storage.sql import Database


class DashboardSQL:
    """Counts over a client's stored messages for the dashboard."""

    database: Database

    async def count_bot_replies(self, client: str, texts: Sequence[str], since: datetime, until: datetime) -> int:
        if not texts:
            return 0
        marks = ", ".join(f"${n}" for n in range(4, 4 + len(texts)))
        return int(await self.database.read(lambda tx: tx.fetchval(
            f"""SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                WHERE c.client = $1 AND m.direction = 'out' AND m.role = 'assistant'
                  AND m.created_at >= $2 AND m.created_at < $3 AND m.text IN ({marks})""",
            client, since, until, *texts)))
