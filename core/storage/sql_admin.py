"""The store's SQL for the console's admin page: each client's recent failures and backlog (a mixin of SQLStore)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.storage.admin_records import ClientFacts
from core.storage.sql import Database, Dialect


class AdminSQL:
    """Failures and backlog of one client, read in one transaction."""

    database: Database
    _d: Dialect

    async def client_facts(self, client: str, since: datetime, overdue_before: datetime) -> ClientFacts:
        async def read(tx: Any) -> ClientFacts:
            send = await tx.fetchrow(
                """SELECT m.created_at, m.error FROM messages m JOIN conversations c ON c.id = m.conversation_id
                   WHERE c.client = $1 AND m.direction = 'out' AND m.status = 'failed'
                   ORDER BY m.id DESC LIMIT 1""", client)
            failed_sends = await tx.fetchval(
                """SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                   WHERE c.client = $1 AND m.direction = 'out' AND m.status = 'failed' AND m.created_at >= $2""",
                client, since)
            effect = await tx.fetchrow(
                """SELECT created_at, last_error FROM effects WHERE client = $1 AND status = 'failed'
                   ORDER BY id DESC LIMIT 1""", client)
            failed_effects = await tx.fetchval(
                "SELECT COUNT(*) FROM effects WHERE client = $1 AND status = 'failed' AND created_at >= $2",
                client, since)
            overdue = await tx.fetchval(
                "SELECT COUNT(*) FROM conversations WHERE client = $1 AND due_at IS NOT NULL AND due_at < $2",
                client, overdue_before)
            attention = await tx.fetchval(
                "SELECT COUNT(*) FROM conversations WHERE client = $1 AND needs_attention", client)
            return ClientFacts(
                failed_sends=int(failed_sends), failed_effects=int(failed_effects), overdue=int(overdue),
                attention=int(attention),
                last_send_failure_at=self._d.time(send["created_at"]) if send else None,
                last_send_failure=self._d.json(send["error"]) if send else None,
                last_effect_failure_at=self._d.time(effect["created_at"]) if effect else None,
                last_effect_failure=effect["last_error"] if effect else None)

        return await self.database.read(read)
