"""The store's SQL for rich outgoing messages: the fallback the outbox records (a mixin of SQLStore)."""

from __future__ import annotations

from typing import Any

from core.storage.sql import Database, Json


class RichSQL:
    """RichStore as SQL over the store's `Database`."""

    database: Database

    async def record_fallback(self, message_id: int, payload: dict[str, Any]) -> None:
        # Only a message not sent yet: what went out keeps the payload it went out with.
        await self.database.write(lambda tx: tx.execute(
            "UPDATE messages SET payload = $1 WHERE id = $2 AND status = 'pending'", Json(payload), message_id))
