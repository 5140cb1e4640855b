"""The store's SQL for console accounts' preferences: the language each chose (a mixin of SQLStore)."""

from __future__ import annotations

from datetime import datetime

from core.storage.sql import Database


class PreferencesSQL:
    """One row per console account that chose something."""

    database: Database

    async def set_console_language(self, user_id: int, language: str, now: datetime) -> None:
        await self.database.write(lambda tx: tx.execute(
            """INSERT INTO console_preferences (user_id, language, updated_at) VALUES ($1, $2, $3)
               ON CONFLICT (user_id) DO UPDATE SET language = excluded.language, updated_at = excluded.updated_at""",
            user_id, language, now))

    async def console_language(self, user_id: int) -> str | None:
        value = await self.database.read(lambda tx: tx.fetchval(
            "SELECT language FROM console_preferences WHERE user_id = $1", user_id))
        return str(value) if value is not None else None
