"""The store's reads for operators' instruments: the backlog /metrics reports, the migrations /ready checks."""

from __future__ import annotations

from datetime import datetime

from core.storage.records import ClientBacklog
from core.storage.sql import Database, Dialect, Tx

# Each count uses a partial index (conversations_due, conversations_attention, effects_due): a scrape every few
# seconds reads the rows waiting, not the tables. A pending effect always has its next try in due_at.
_DUE = """SELECT client, COUNT(*) AS n, MIN(due_at) AS oldest FROM conversations
          WHERE due_at IS NOT NULL AND due_at <= $1 GROUP BY client"""
_ATTENTION = "SELECT client, COUNT(*) AS n FROM conversations WHERE needs_attention = TRUE GROUP BY client"
_EFFECTS = "SELECT client, COUNT(*) AS n FROM effects WHERE due_at IS NOT NULL AND status = 'pending' GROUP BY client"


class ObservabilitySQL:
    """Mixed into SQLStore: reads only, each in one read transaction."""

    database: Database
    _d: Dialect

    async def backlog(self, now: datetime) -> list[ClientBacklog]:
        async def read(tx: Tx) -> list[ClientBacklog]:
            found: dict[str, dict[str, object]] = {}
            for row in await tx.fetch(_DUE, now):
                found.setdefault(row["client"], {}).update(due=row["n"], oldest_due_at=self._d.time(row["oldest"]))
            for row in await tx.fetch(_ATTENTION):
                found.setdefault(row["client"], {})["needing_attention"] = row["n"]
            for row in await tx.fetch(_EFFECTS):
                found.setdefault(row["client"], {})["effects_pending"] = row["n"]
            return [ClientBacklog(client, **fields) for client, fields in sorted(found.items())]  # type: ignore[arg-type]

        return await self.database.read(read)

    async def applied_migrations(self) -> set[str]:
        """Versions recorded in supabase_migrations.schema_migrations (PostgreSQL only; empty when it has none)."""
        async def read(tx: Tx) -> set[str]:
            if await tx.fetchval("SELECT to_regclass('supabase_migrations.schema_migrations')") is None:
                return set()
            return {row["version"] for row in await tx.fetch("SELECT version FROM supabase_migrations.schema_migrations")}

        return await self.database.read(read)
