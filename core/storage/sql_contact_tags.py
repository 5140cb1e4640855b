"""The store's SQL for the console's inbox rows: the tags of many people of a client at once (a mixin of SQLStore)."""

from __future__ import annotations

from collections.abc import Sequence

from core.storage.sql import Database


class ContactTagsSQL:
    """Tags per person, read for a page of conversations in one statement."""

    database: Database

    async def tags_of(self, client: str, user_keys: Sequence[str]) -> dict[str, list[str]]:
        keys = sorted(set(user_keys))
        if not keys:
            return {}
        marks = ", ".join(f"${n}" for n in range(2, 2 + len(keys)))
        rows = await self.database.read(lambda tx: tx.fetch(
            f"SELECT user_key, tag FROM contact_tags WHERE client = $1 AND user_key IN ({marks}) ORDER BY tag",
            client, *keys))
        tags: dict[str, list[str]] = {}
        for row in rows:
            tags.setdefault(row["user_key"], []).append(row["tag"])
        return tags
