"""The store's SQL for retention (content past a client's retention removed, counts kept) and for erasing one
person; a mixin of SQLStore. Every purge statement touches at most `limit` rows: one short transaction each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.storage.retention_records import ContactData, Erasure, ExpiredMessage
from core.storage.sql import Database, Dialect, Tx

# A message that still holds something retention removes (the same terms as the partial index messages_content,
# so that both databases read only such rows).
_HOLDS_CONTENT = ("(m.text IS NOT NULL OR m.payload IS NOT NULL OR m.error IS NOT NULL "
                  "OR m.media_path IS NOT NULL)")
# A message its turn is done with: an unanswered one or a reply not sent yet keeps its content until then.
_SETTLED = "m.processed_at IS NOT NULL AND (m.status IS NULL OR m.status <> 'pending')"
# The person's conversations with a client, whichever of their keys is given (wa_id, or the business-scoped id).
_CONTACT = "client = $1 AND (user_key = $2 OR wa_id = $2 OR user_id = $2)"

# Run on erasure after the person's rows are gone and before their conversations are: tables that keep counts
# per conversation (no content) and must outlive it, with the conversation id taken away. `{ids}` is the list of
# the person's conversation ids as placeholders from $2 ($1 is the client). (usage_daily's foreign key would set
# it NULL on the delete too; said here, the erasure reports it.)
ANONYMISE_ON_ERASE: dict[str, str] = {
    "usage_daily": "UPDATE usage_daily SET conversation_id = NULL WHERE client = $1 AND conversation_id IN ({ids})",
}


def _placeholders(count: int, first: int) -> str:
    return ", ".join(f"${first + n}" for n in range(count))


class RetentionSQL:
    """Retention and erasure over the store's `Database`."""

    database: Database
    _d: Dialect

    # ---------------------------------------------------------------- the daily job

    async def claim_job(self, name: str, owner: str, now: datetime, not_since: datetime) -> bool:
        """Take a periodic job's run unless one started after `not_since`; several processes: one wins."""
        won = await self.database.write(lambda tx: tx.fetchval(
            """INSERT INTO scheduled_jobs (name, owner, started_at) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, started_at = excluded.started_at,
                   finished_at = NULL
               WHERE scheduled_jobs.started_at <= $4
               RETURNING owner""", name, owner, now, not_since))
        return won == owner

    async def finish_job(self, name: str, owner: str, now: datetime) -> None:
        await self.database.write(lambda tx: tx.execute(
            "UPDATE scheduled_jobs SET finished_at = $1 WHERE name = $2 AND owner = $3", now, name, owner))

    async def stored_clients(self) -> list[str]:
        """Every client with a conversation in the store (a client whose folder is gone still has data)."""
        rows = await self.database.read(lambda tx: tx.fetch("SELECT DISTINCT client FROM conversations ORDER BY client"))
        return [row["client"] for row in rows]

    # ---------------------------------------------------------------- retention

    async def expired_messages(self, client: str, before: datetime, after: tuple[datetime, int] | None,
                               limit: int) -> list[ExpiredMessage]:
        start = after or (datetime.min.replace(tzinfo=before.tzinfo), 0)
        rows = await self.database.read(lambda tx: tx.fetch(
            # The unary + keeps SQLite's planner off messages_timeline (which would read every message of the
            # client): the partial index messages_content, oldest first, is the one to read.
            f"""SELECT m.id, m.created_at, m.media_path FROM messages m
                WHERE {_HOLDS_CONTENT} AND m.created_at < $2
                  AND +m.conversation_id IN (SELECT id FROM conversations WHERE client = $1) AND {_SETTLED}
                  AND (m.created_at > $3 OR (m.created_at = $3 AND m.id > $4))
                ORDER BY m.created_at, m.id LIMIT $5""", client, before, start[0], start[1], limit))
        return [ExpiredMessage(row["id"], self._d.time(row["created_at"]), row["media_path"])  # type: ignore[arg-type]
                for row in rows]

    async def clear_messages(self, ids: Sequence[int], *, media: bool) -> int:
        if not ids:
            return 0
        media_column = ", media_path = NULL" if media else ""
        return await self.database.write(lambda tx: tx.execute(
            f"""UPDATE messages SET text = NULL, payload = NULL, error = NULL{media_column}
                WHERE id IN ({_placeholders(len(ids), 1)})""", *ids))

    async def clear_status_payloads(self, client: str, before: datetime, limit: int) -> int:
        return await self.database.write(lambda tx: tx.execute(
            """UPDATE message_statuses SET payload = '{}' WHERE (client, wamid, status) IN (
                   SELECT client, wamid, status FROM message_statuses
                   WHERE client = $1 AND recorded_at < $2 AND payload <> '{}' LIMIT $3)""", client, before, limit))

    async def clear_effect_data(self, client: str, before: datetime, limit: int) -> int:
        return await self.database.write(lambda tx: tx.execute(
            """UPDATE effects SET data = '{}', last_error = NULL WHERE id IN (
                   SELECT id FROM effects WHERE client = $1 AND created_at < $2 AND status <> 'pending'
                   AND (data <> '{}' OR last_error IS NOT NULL) LIMIT $3)""", client, before, limit))

    # ---------------------------------------------------------------- erasure

    async def contact_data(self, client: str, user_key: str) -> ContactData:
        async def read(tx: Tx) -> ContactData:
            return await self._contact(tx, client, user_key, lock="")

        return await self.database.read(read)

    async def erase_contact(self, client: str, user_key: str) -> Erasure:
        async def write(tx: Tx) -> Erasure:
            # Locked first: a turn or a webhook for this person waits, then finds nothing (LeaseLost, a new row).
            found = await self._contact(tx, client, user_key, lock="FOR UPDATE" if self._d.row_lock else "")
            ids = found.conversation_ids
            if not ids:
                return Erasure()
            within = _placeholders(len(ids), 2)
            statuses = await tx.execute(
                f"""DELETE FROM message_statuses WHERE client = $1 AND wamid IN (
                        SELECT wamid FROM messages WHERE conversation_id IN ({within}) AND wamid IS NOT NULL)""",
                client, *ids)
            messages = await tx.execute(
                f"DELETE FROM messages WHERE conversation_id IN ({_placeholders(len(ids), 1)})", *ids)
            records = await tx.execute(
                f"DELETE FROM client_records WHERE client = $1 AND conversation_id IN ({within})", client, *ids)
            effects = await tx.execute(
                f"DELETE FROM effects WHERE client = $1 AND conversation_id IN ({within})", client, *ids)
            # Contacts and broadcast recipients are keyed by the person's user key, not by a conversation.
            keys = [row["user_key"] for row in await tx.fetch(
                f"SELECT DISTINCT user_key FROM conversations WHERE client = $1 AND id IN ({within})", client, *ids)]
            people = _placeholders(len(keys), 2)
            for table in ("broadcast_recipients", "contact_tags", "contacts"):
                await tx.execute(f"DELETE FROM {table} WHERE client = $1 AND user_key IN ({people})", client, *keys)
            anonymised = {table: await tx.execute(sql.format(ids=within), client, *ids)
                          for table, sql in ANONYMISE_ON_ERASE.items()}
            await tx.execute(f"DELETE FROM conversations WHERE client = $1 AND id IN ({within})", client, *ids)
            return Erasure(ids, found.media_paths, messages, statuses, records, effects, anonymised)

        return await self.database.write(write)

    async def _contact(self, tx: Tx, client: str, user_key: str, *, lock: str) -> ContactData:
        rows = await tx.fetch(f"SELECT id FROM conversations WHERE {_CONTACT} ORDER BY id {lock}", client, user_key)
        ids = tuple(int(row["id"]) for row in rows)
        if not ids:
            return ContactData()
        paths = await tx.fetch(
            f"""SELECT media_path FROM messages WHERE conversation_id IN ({_placeholders(len(ids), 1)})
                AND media_path IS NOT NULL ORDER BY id""", *ids)
        return ContactData(ids, tuple(row["media_path"] for row in paths))
