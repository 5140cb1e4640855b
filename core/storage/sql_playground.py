"""The store's SQL for the console's playground: edited system prompts under trial (a mixin of SQLStore)."""

from __future__ import annotations

from datetime import datetime

from core.storage.sql import Database


class PlaygroundSQL:
    """A system prompt being tried in one playground conversation, keyed by client and the tester's user key."""

    database: Database

    async def set_playground_prompt(self, client: str, user_key: str, instructions: str, now: datetime) -> None:
        await self.database.write(lambda tx: tx.execute(
            """INSERT INTO playground_prompts (client, user_key, instructions, updated_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (client, user_key) DO UPDATE SET instructions = excluded.instructions,
                                                            updated_at = excluded.updated_at""",
            client, user_key, instructions, now))

    async def playground_prompt(self, client: str, user_key: str) -> str | None:
        value = await self.database.read(lambda tx: tx.fetchval(
            "SELECT instructions FROM playground_prompts WHERE client = $1 AND user_key = $2", client, user_key))
        return str(value) if value is not None else None
