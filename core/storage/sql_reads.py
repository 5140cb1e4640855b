"""The store's SQL for unread counts: when each console account last saw each conversation (a mixin of SQLStore)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.storage.sql import Database


class ReadsSQL:
    """Per account and conversation, the newest message seen; unread is what came in after it."""

    database: Database

    async def mark_seen(self, user_id: int, conversation_id: int, seen_at: datetime) -> None:
        # Never backwards: an older page refreshed late must not make seen messages unread again.
        await self.database.write(lambda tx: tx.execute(
            """INSERT INTO console_reads (user_id, conversation_id, seen_at) VALUES ($1, $2, $3)
               ON CONFLICT (user_id, conversation_id) DO UPDATE SET seen_at = excluded.seen_at
               WHERE console_reads.seen_at < excluded.seen_at""", user_id, conversation_id, seen_at))

    async def unread_counts(self, user_id: int, conversation_ids: Sequence[int]) -> dict[int, int]:
        if not conversation_ids:
            return {}
        marks = ", ".join(f"${n}" for n in range(2, 2 + len(conversation_ids)))
        rows = await self.database.read(lambda tx: tx.fetch(
            f"""SELECT m.conversation_id, COUNT(*) AS unread FROM messages m
                LEFT JOIN console_reads r ON r.conversation_id = m.conversation_id AND r.user_id = $1
                WHERE m.conversation_id IN ({marks}) AND m.direction = 'in'
                  AND (r.seen_at IS NULL OR m.created_at > r.seen_at)
                GROUP BY m.conversation_id""", user_id, *conversation_ids))
        return {int(row["conversation_id"]): int(row["unread"]) for row in rows}
