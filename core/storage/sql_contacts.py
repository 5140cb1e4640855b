"""The store's contacts: the people who wrote to a client (from their conversations) and what staff keep of them.

A `contacts` row exists only once staff edit the person or they opt out: the acknowledgement (record_inbound)
writes nothing more for contacts, and a person's name and number are read from their conversations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.storage.base import LeaseLost
from core.storage.broadcast_records import Contact, ContactChange, ContactQuery
from core.storage.records import Claim, NewMessage, StoredMessage
from core.storage.sql import Database, Dialect, Row, Tx

# One row per person (user_key) of a client: their conversations summed up, beside staff's row when there is one.
_PEOPLE = """WITH people AS (
                 SELECT user_key, MAX(wa_id) AS wa_id, MAX(contact_name) AS profile_name,
                        MIN(created_at) AS first_seen, MAX(last_inbound_at) AS last_inbound_at
                 FROM conversations WHERE client = $1 {scope} GROUP BY user_key)
             SELECT p.user_key, p.wa_id, p.profile_name, p.first_seen, p.last_inbound_at, k.name, k.email, k.notes,
                    k.opted_out, k.opted_out_at
             FROM people p LEFT JOIN contacts k ON k.client = $1 AND k.user_key = p.user_key"""
# The person's row, made when first needed (defaults: nothing set, not opted out).
_ENSURE = """INSERT INTO contacts (client, user_key, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (client, user_key) DO NOTHING"""


def like_escaped(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


class ContactSQL:
    """ContactStore as SQL; mixed into SQLStore, whose `database`, dialect and shared steps it uses."""

    database: Database
    _d: Dialect

    async def list_contacts(self, client: str, query: ContactQuery, limit: int, offset: int) -> list[Contact]:
        args: list[Any] = [client]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where: list[str] = []
        if query.tag:
            where.append(f"EXISTS (SELECT 1 FROM contact_tags t WHERE t.client = $1 AND t.user_key = p.user_key "
                         f"AND t.tag = {arg(query.tag.lower())})")
        if query.text:
            pattern = arg("%" + like_escaped(query.text.lower()) + "%")
            where.append(" OR ".join(f"LOWER(COALESCE({column}, '')) LIKE {pattern} ESCAPE '!'"
                                     for column in ("k.name", "p.profile_name", "p.user_key", "k.email")).join("()"))
        sql = (_PEOPLE.format(scope="") + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY (p.last_inbound_at IS NULL), p.last_inbound_at DESC, p.user_key"
               + f" LIMIT {arg(limit)} OFFSET {arg(offset)}")

        async def read(tx: Tx) -> list[Contact]:
            return await self._contacts(tx, client, await tx.fetch(sql, *args))

        return await self.database.read(read)

    async def get_contact(self, client: str, user_key: str) -> Contact | None:
        async def read(tx: Tx) -> Contact | None:
            rows = await tx.fetch(_PEOPLE.format(scope="AND user_key = $2"), client, user_key)
            found = await self._contacts(tx, client, rows)
            return found[0] if found else None

        return await self.database.read(read)

    async def update_contact(self, client: str, user_key: str, change: ContactChange, now: datetime) -> Contact | None:
        async def write(tx: Tx) -> Contact | None:
            known = await tx.fetchval("SELECT 1 FROM conversations WHERE client = $1 AND user_key = $2 LIMIT 1",
                                      client, user_key)
            if known is None:
                return None
            await tx.execute(_ENSURE, client, user_key, now)
            for column in ("name", "email", "notes"):
                if column in change.fields:
                    await tx.execute(f"UPDATE contacts SET {column} = $3, updated_at = $4 "
                                     "WHERE client = $1 AND user_key = $2", client, user_key,
                                     getattr(change, column), now)
            if "opted_out" in change.fields:
                await tx.execute(
                    """UPDATE contacts SET opted_out = $3, updated_at = $4,
                           opted_out_at = CASE WHEN $3 THEN COALESCE(opted_out_at, $4) END
                       WHERE client = $1 AND user_key = $2""", client, user_key, change.opted_out, now)
            if "tags" in change.fields:
                await tx.execute("DELETE FROM contact_tags WHERE client = $1 AND user_key = $2", client, user_key)
                await tx.executemany("INSERT INTO contact_tags (client, user_key, tag) VALUES ($1, $2, $3)",
                                     [(client, user_key, tag) for tag in sorted(set(change.tags))])
            rows = await tx.fetch(_PEOPLE.format(scope="AND user_key = $2"), client, user_key)
            return (await self._contacts(tx, client, rows))[0]

        return await self.database.write(write)

    async def opt_out_turn(self, claim: Claim, batch: Sequence[StoredMessage], batch_id: str, reply: NewMessage,
                           now: datetime) -> list[StoredMessage]:
        """Close a batch that holds an opt-out keyword: the person is opted out, and told so (`reply`, stored
        pending and returned) only when this opts them out; already opted out, nothing is said again.
        Raises LeaseLost when the claim no longer holds the conversation."""
        conversation = claim.conversation

        async def write(tx: Tx) -> list[StoredMessage]:
            row = await tx.fetchrow(f"SELECT lease_owner FROM conversations WHERE id = $1 {self._d.row_lock}",
                                    conversation.id)
            if row is None or row["lease_owner"] != claim.owner:
                raise LeaseLost(f"conversation {conversation.id} is no longer held by {claim.owner}")
            handled = [await tx.fetchval(
                "UPDATE messages SET processed_at = $1, batch_id = $2 WHERE id = $3 AND processed_at IS NULL "
                "RETURNING created_at", now, batch_id, message.id) for message in batch]
            await self._count_handled(tx, conversation.client, conversation.id, handled)  # type: ignore[attr-defined]
            changed = await tx.fetchval(
                """INSERT INTO contacts (client, user_key, opted_out, opted_out_at, updated_at)
                   VALUES ($1, $2, TRUE, $3, $3)
                   ON CONFLICT (client, user_key) DO UPDATE SET opted_out = TRUE, opted_out_at = $3, updated_at = $3
                   WHERE contacts.opted_out = FALSE
                   RETURNING user_key""", conversation.client, conversation.user_key, now)
            await tx.execute("UPDATE conversations SET turn_failures = 0, updated_at = $1 WHERE id = $2",
                             now, conversation.id)
            if changed is None:
                return []
            return [await self._insert(tx, conversation.id, reply, batch_id, now)]  # type: ignore[attr-defined]

        return await self.database.write(write)

    async def _contacts(self, tx: Tx, client: str, rows: Sequence[Row]) -> list[Contact]:
        """Contacts of these rows, with their tags (one more statement for the page)."""
        keys = [row["user_key"] for row in rows]
        tags: dict[str, list[str]] = {}
        if keys:
            marks = ", ".join(f"${n + 2}" for n in range(len(keys)))
            for tag in await tx.fetch(f"SELECT user_key, tag FROM contact_tags WHERE client = $1 AND user_key IN "
                                      f"({marks}) ORDER BY tag", client, *keys):
                tags.setdefault(tag["user_key"], []).append(tag["tag"])
        d = self._d
        return [Contact(user_key=row["user_key"], wa_id=row["wa_id"], profile_name=row["profile_name"],
                        name=row["name"], email=row["email"], notes=row["notes"], tags=tags.get(row["user_key"], []),
                        opted_out=bool(row["opted_out"]), opted_out_at=d.time(row["opted_out_at"]),
                        first_seen=d.time(row["first_seen"]), last_inbound_at=d.time(row["last_inbound_at"]))
                for row in rows]
