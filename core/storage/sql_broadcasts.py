"""The store's broadcasts: the job, its recipients (one row each), claims under a lease, and each send recorded.

A recipient goes queued → sending (claimed; its outbound message stored in the person's conversation before the
send) → sent or failed, or skipped (opted out) / cancelled. The send and its record commit apart, so a process that
dies between them leaves the recipient `sending` with a message but no wamid: claimed again after the lease, it is
recorded from a status webhook that named its callback data meanwhile (`link_broadcast_status`) or sent again."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.storage.broadcast_records import Broadcast, BroadcastCounts, Recipient
from core.storage.records import NewMessage, StoredMessage
from core.storage.sql import Database, Dialect, Json, Row, Tx

# Broadcasts that may have work: not finished, and due.
_WORKABLE = "status IN ('scheduled', 'running', 'paused') AND due_at IS NOT NULL AND due_at <= $1"
# Recipients a claim may take: waiting, or claimed by a process whose lease ran out.
_CLAIMABLE = "(state = 'queued' OR (state = 'sending' AND lease_until <= $3))"
# What a status webhook's biz_opaque_callback_data says of a broadcast send: "broadcast:<id>:<recipient id>".
CALLBACK_PREFIX = "broadcast:"


def _slots_within(ahead: timedelta, horizon_seconds: float, rate_per_second: float) -> int:
    """How many sends, 1 / rate apart from `ahead` on, start before the horizon: a claim takes no recipient it could
    not send well inside its lease."""
    room = horizon_seconds - ahead.total_seconds()
    return max(0, math.ceil(room * rate_per_second - 1e-9))


def callback_data(broadcast_id: int, recipient_id: int) -> str:
    """The biz_opaque_callback_data a broadcast send carries: Meta returns it in the send's status webhooks."""
    return f"{CALLBACK_PREFIX}{broadcast_id}:{recipient_id}"


class BroadcastSQL:
    """BroadcastStore as SQL; mixed into SQLStore, whose `database`, dialect and shared steps it uses."""

    database: Database
    _d: Dialect

    async def create_broadcast(self, client: str, phone_number_id: str, template: str, language: str,
                               parameters: Any, audience: dict[str, Any], at: datetime, now: datetime) -> Broadcast | None:
        """Store a broadcast and its recipients, resolved now; None (nothing stored) when the audience is no one."""
        async def write(tx: Tx) -> Broadcast | None:
            keys = list(dict.fromkeys(audience.get("user_keys") or []))
            tags = sorted({tag.lower() for tag in audience.get("tags") or []})
            if tags:
                # Read, then inserted as values: an INSERT … SELECT of untyped parameters does not type on Postgres.
                marks = ", ".join(f"${n + 2}" for n in range(len(tags)))
                keys = [row["user_key"] for row in await tx.fetch(
                    f"SELECT DISTINCT user_key FROM contact_tags WHERE client = $1 AND tag IN ({marks}) "
                    "ORDER BY user_key", client, *tags)]
            if not keys:
                return None  # an audience of no one: nothing to store
            row = await tx.fetchrow(
                """INSERT INTO broadcasts (client, phone_number_id, template, language, parameters, audience, status,
                                           due_at, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id""",
                client, phone_number_id, template, language, Json(parameters), Json(audience),
                "scheduled" if at > now else "running", at, now)
            assert row is not None
            broadcast_id = row["id"]
            if keys:
                await tx.executemany(
                    """INSERT INTO broadcast_recipients (broadcast_id, client, user_key, updated_at)
                       VALUES ($1, $2, $3, $4) ON CONFLICT (broadcast_id, user_key) DO NOTHING""",
                    [(broadcast_id, client, key, now) for key in keys])
            created = await tx.fetchrow(
                """UPDATE broadcasts SET total = (SELECT COUNT(*) FROM broadcast_recipients WHERE broadcast_id = $1)
                   WHERE id = $1 RETURNING *""", broadcast_id)
            assert created is not None
            return self._broadcast(created)

        return await self.database.write(write)

    async def get_broadcast(self, client: str, broadcast_id: int) -> Broadcast | None:
        row = await self.database.read(lambda tx: tx.fetchrow(
            "SELECT * FROM broadcasts WHERE client = $1 AND id = $2", client, broadcast_id))
        return self._broadcast(row) if row is not None else None

    async def list_broadcasts(self, client: str, limit: int, offset: int) -> list[Broadcast]:
        rows = await self.database.read(lambda tx: tx.fetch(
            "SELECT * FROM broadcasts WHERE client = $1 ORDER BY id DESC LIMIT $2 OFFSET $3", client, limit, offset))
        return [self._broadcast(row) for row in rows]

    async def broadcast_counts(self, broadcast_id: int) -> BroadcastCounts:
        async def read(tx: Tx) -> tuple[list[Row], list[Row]]:
            states = await tx.fetch(
                """SELECT r.state, m.status, COUNT(*) AS n FROM broadcast_recipients r
                   LEFT JOIN messages m ON m.id = r.message_id
                   WHERE r.broadcast_id = $1 GROUP BY r.state, m.status""", broadcast_id)
            failures = await tx.fetch(
                """SELECT r.error_code, m.error FROM broadcast_recipients r LEFT JOIN messages m ON m.id = r.message_id
                   WHERE r.broadcast_id = $1 AND (r.state = 'failed' OR (r.state = 'sent' AND m.status = 'failed'))""",
                broadcast_id)
            return states, failures

        states, failures = await self.database.read(read)
        counts: dict[str, int] = {}
        for row in states:
            # A sent recipient is counted by its message's latest status (delivered, read, or failed later).
            state = row["state"]
            if state == "sent" and row["status"] in ("delivered", "read", "failed"):
                state = row["status"]
            counts[state] = counts.get(state, 0) + int(row["n"])
        by_code: dict[str, int] = {}
        for row in failures:
            error = self._d.json(row["error"]) or {}
            code = row["error_code"] if row["error_code"] is not None else error.get("code")
            by_code[str(code) if code is not None else "unknown"] = by_code.get(str(code), 0) + 1
        return BroadcastCounts(**{k: v for k, v in counts.items() if k in BroadcastCounts.__dataclass_fields__},
                               failed_by_code=dict(sorted(by_code.items())))

    async def cancel_broadcast(self, client: str, broadcast_id: int, now: datetime) -> Broadcast | None:
        async def write(tx: Tx) -> Broadcast | None:
            row = await tx.fetchrow(
                """UPDATE broadcasts SET status = CASE WHEN status IN ('done', 'cancelled') THEN status
                                                     ELSE 'cancelled' END,
                       due_at = NULL, updated_at = $3, finished_at = COALESCE(finished_at, $3)
                   WHERE client = $1 AND id = $2 RETURNING *""", client, broadcast_id, now)
            if row is None:
                return None
            # Sends in flight finish; what waits is never sent.
            await tx.execute("UPDATE broadcast_recipients SET state = 'cancelled', updated_at = $2 "
                             "WHERE broadcast_id = $1 AND state = 'queued'", broadcast_id, now)
            return self._broadcast(row)

        return await self.database.write(write)

    async def next_broadcast_due(self) -> datetime | None:
        value = await self.database.read(lambda tx: tx.fetchval(
            "SELECT MIN(due_at) FROM broadcasts WHERE due_at IS NOT NULL AND status <> 'cancelled'"))
        return self._d.time(value)

    async def due_broadcasts(self, now: datetime, limit: int) -> list[Broadcast]:
        rows = await self.database.read(lambda tx: tx.fetch(
            f"SELECT * FROM broadcasts WHERE {_WORKABLE} ORDER BY due_at, id LIMIT $2", now, limit))
        return [self._broadcast(row) for row in rows]

    async def claim_recipients(self, broadcast_id: int, owner: str, now: datetime, lease_seconds: float,
                               limit: int, *, rate_per_second: float | None = None) -> list[Recipient]:
        """Lease up to `limit` of a running broadcast's recipients (waiting ones, or a dead claim's), in order; when
        none is left at all, the broadcast is done. With `rate_per_second`, only as many as the number's free send
        slots (`book_send_slots`) allow within half the lease."""
        lease_until = now + timedelta(seconds=lease_seconds)

        async def write(tx: Tx) -> list[Recipient]:
            phone_number_id = await tx.fetchval(
                f"SELECT phone_number_id FROM broadcasts WHERE id = $1 AND {_WORKABLE.replace('$1', '$2')}",
                broadcast_id, now)
            if phone_number_id is None:
                return []
            take = limit
            if rate_per_second is not None:
                # Read without a lock: it sizes the claim; the slots themselves are booked when the sends are ready.
                booked = self._d.time(await tx.fetchval(
                    "SELECT next_at FROM send_slots WHERE phone_number_id = $1", phone_number_id))
                ahead = max(booked - now, timedelta(0)) if booked is not None else timedelta(0)
                take = min(limit, _slots_within(ahead, lease_seconds / 2, rate_per_second))
                if take == 0:
                    return []  # the number's slots are booked that far ahead: a later pass claims
            rows = await tx.fetch(
                f"""UPDATE broadcast_recipients SET state = 'sending', lease_owner = $1, lease_until = $2,
                        attempts = attempts + 1, updated_at = $3
                    WHERE id IN (SELECT id FROM broadcast_recipients WHERE broadcast_id = $4 AND {_CLAIMABLE}
                                 ORDER BY id LIMIT $5 {self._d.claim_lock})
                    RETURNING id""", owner, lease_until, now, broadcast_id, take)
            if not rows:
                left = await tx.fetchval("SELECT 1 FROM broadcast_recipients WHERE broadcast_id = $1 "
                                         "AND state IN ('queued', 'sending') LIMIT 1", broadcast_id)
                if left is None:
                    await tx.execute("""UPDATE broadcasts SET status = 'done', due_at = NULL, updated_at = $2,
                                            finished_at = $2 WHERE id = $1 AND status <> 'cancelled'""",
                                     broadcast_id, now)
                return []
            await tx.execute("UPDATE broadcasts SET status = 'running', updated_at = $2 WHERE id = $1 "
                             "AND status <> 'running'", broadcast_id, now)
            ids = [row["id"] for row in rows]
            marks = ", ".join(f"${n + 2}" for n in range(len(ids)))
            found = await tx.fetch(
                f"""SELECT r.*, k.opted_out, k.name, k.email,
                           (SELECT MAX(contact_name) FROM conversations c
                            WHERE c.client = r.client AND c.user_key = r.user_key) AS profile_name
                    FROM broadcast_recipients r LEFT JOIN contacts k ON k.client = r.client AND k.user_key = r.user_key
                    WHERE r.broadcast_id = $1 AND r.id IN ({marks}) ORDER BY r.id""", broadcast_id, *ids)
            return [Recipient(id=row["id"], broadcast_id=broadcast_id, user_key=row["user_key"], state=row["state"],
                              message_id=row["message_id"], conversation_id=row["conversation_id"],
                              opted_out=bool(row["opted_out"]), name=row["name"] or row["profile_name"],
                              email=row["email"], attempts=row["attempts"], lease_until=lease_until)
                    for row in found]

        return await self.database.write(write)

    async def book_send_slots(self, phone_number_id: str, count: int, now: datetime,
                              rate_per_second: float) -> list[datetime]:
        """Book `count` broadcast send times on the number, 1 / rate apart from its next free one (now if it has been
        idle), and advance it past them. Bookers of one number take turns on its row: no two get the same slot, and
        all processes together send no faster than the rate. A slot not used only leaves the number idle then."""
        if count <= 0:
            return []
        spacing = timedelta(seconds=1 / rate_per_second)

        async def write(tx: Tx) -> list[datetime]:
            await tx.execute("INSERT INTO send_slots (phone_number_id, next_at) VALUES ($1, $2) "
                             "ON CONFLICT (phone_number_id) DO NOTHING", phone_number_id, now)
            booked = self._d.time(await tx.fetchval(
                f"SELECT next_at FROM send_slots WHERE phone_number_id = $1 {self._d.row_lock}", phone_number_id))
            start = max(booked, now) if booked is not None else now
            await tx.execute("UPDATE send_slots SET next_at = $2 WHERE phone_number_id = $1",
                             phone_number_id, start + spacing * count)
            return [start + spacing * n for n in range(count)]

        return await self.database.write(write)

    async def prepare_recipient(self, broadcast: Broadcast, recipient: Recipient, message: NewMessage | None,
                                now: datetime) -> StoredMessage | None:
        """The outbound message of a claimed recipient, stored before its send (a new conversation for a person who
        never wrote on this number); an opted-out one (`message` None) is marked skipped. A recipient claimed again
        gets the message it already has; None when it needs no send (skipped, or already sent)."""
        async def write(tx: Tx) -> StoredMessage | None:
            if message is None:
                await tx.execute("""UPDATE broadcast_recipients SET state = 'skipped', lease_owner = NULL,
                                        lease_until = NULL, updated_at = $2 WHERE id = $1 AND state = 'sending'""",
                                 recipient.id, now)
                return None
            if recipient.message_id is not None:
                row = await tx.fetchrow("SELECT * FROM messages WHERE id = $1", recipient.message_id)
                if row is not None and row["wamid"] is None and row["status"] == "pending":
                    return self._message(row)  # type: ignore[attr-defined]
                # Sent before a crash, and recorded since (its status webhook named it): nothing to send.
                await tx.execute("""UPDATE broadcast_recipients SET state = CASE WHEN $2 THEN 'sent' ELSE 'failed' END,
                                        wamid = $3, lease_owner = NULL, lease_until = NULL, updated_at = $4
                                    WHERE id = $1""", recipient.id, row is not None and row["wamid"] is not None,
                                 row["wamid"] if row is not None else None, now)
                return None
            digits = recipient.user_key.isdigit()
            conversation_id = await tx.fetchval(
                """INSERT INTO conversations (client, phone_number_id, user_key, wa_id, user_id, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $6)
                   ON CONFLICT (client, phone_number_id, user_key) DO UPDATE SET updated_at = excluded.updated_at
                   RETURNING id""", broadcast.client, broadcast.phone_number_id, recipient.user_key,
                recipient.user_key if digits else None, None if digits else recipient.user_key, now)
            stored = await self._insert(tx, conversation_id, message, None, now)  # type: ignore[attr-defined]
            await tx.execute("UPDATE broadcast_recipients SET message_id = $2, conversation_id = $3 WHERE id = $1",
                             recipient.id, stored.id, conversation_id)
            return stored

        return await self.database.write(write)

    async def record_recipient(self, recipient_id: int, message_id: int, wamid: str | None, status: str,
                               error: dict[str, Any] | None, now: datetime) -> None:
        """A send's outcome, for the message (as mark_sent: counted, statuses that came first applied) and the
        recipient, in one transaction."""
        async def write(tx: Tx) -> None:
            if wamid:
                await tx.serialize_on(wamid)
            await self._record_send(tx, message_id, wamid, status, error)  # type: ignore[attr-defined]
            code = (error or {}).get("code")
            await tx.execute(
                """UPDATE broadcast_recipients SET state = $2, wamid = $3, error_code = $4, error = $5,
                       lease_owner = NULL, lease_until = NULL, updated_at = $6 WHERE id = $1""",
                recipient_id, "failed" if status == "failed" else "sent", wamid,
                code if isinstance(code, int) else None, (error or {}).get("message"), now)

        await self.database.write(write)

    async def release_recipients(self, recipient_ids: Sequence[int], owner: str, now: datetime) -> None:
        """Give claimed recipients back, unsent (a pause): they wait for the next claim, in their order."""
        if not recipient_ids:
            return
        marks = ", ".join(f"${n + 3}" for n in range(len(recipient_ids)))
        await self.database.write(lambda tx: tx.execute(
            f"""UPDATE broadcast_recipients SET state = 'queued', lease_owner = NULL, lease_until = NULL,
                    updated_at = $2 WHERE lease_owner = $1 AND state = 'sending' AND id IN ({marks})""",
            owner, now, *recipient_ids))

    async def pause_broadcast(self, broadcast_id: int, until: datetime, error: str, now: datetime) -> int:
        """Hold a broadcast until `until` (a rate or spam error); returns how many pauses in a row so far."""
        pauses = await self.database.write(lambda tx: tx.fetchval(
            """UPDATE broadcasts SET status = 'paused', due_at = $2, pauses = pauses + 1, last_error = $3,
                   updated_at = $4 WHERE id = $1 AND status IN ('scheduled', 'running', 'paused')
               RETURNING pauses""", broadcast_id, until, error, now))
        return int(pauses or 0)

    async def broadcast_progressed(self, broadcast_id: int, now: datetime) -> None:
        """A batch went out: the pauses in a row start again from zero."""
        await self.database.write(lambda tx: tx.execute(
            "UPDATE broadcasts SET pauses = 0, updated_at = $2 WHERE id = $1 AND pauses > 0", broadcast_id, now))

    async def _link_broadcast_status(self, tx: Tx, client: str, wamid: str, payload: dict[str, Any]) -> bool:
        """A status for a wamid no message has: when its callback data names a broadcast recipient whose send was
        never recorded (its process died after Meta accepted it), record it now, so it is not sent again."""
        data = payload.get("biz_opaque_callback_data")
        if not isinstance(data, str) or not data.startswith(CALLBACK_PREFIX):
            return False
        try:
            broadcast_id, recipient_id = (int(part) for part in data.removeprefix(CALLBACK_PREFIX).split(":"))
        except ValueError:
            return False
        row = await tx.fetchrow(
            f"""SELECT r.message_id FROM broadcast_recipients r JOIN messages m ON m.id = r.message_id
                WHERE r.id = $1 AND r.broadcast_id = $2 AND r.client = $3 AND m.wamid IS NULL {self._d.row_lock}""",
            recipient_id, broadcast_id, client)
        if row is None:
            return False
        await self._record_send(tx, row["message_id"], wamid, "sent", None)  # type: ignore[attr-defined]
        await tx.execute("UPDATE broadcast_recipients SET state = 'sent', wamid = $2, lease_owner = NULL, "
                         "lease_until = NULL WHERE id = $1", recipient_id, wamid)
        return True

    def _broadcast(self, row: Row) -> Broadcast:
        d = self._d
        return Broadcast(id=row["id"], client=row["client"], phone_number_id=row["phone_number_id"],
                         template=row["template"], language=row["language"], parameters=d.json(row["parameters"]),
                         audience=d.json(row["audience"]), status=row["status"], due_at=d.time(row["due_at"]),
                         pauses=row["pauses"], last_error=row["last_error"], total=row["total"],
                         created_at=d.time(row["created_at"]), updated_at=d.time(row["updated_at"]),  # type: ignore[arg-type]
                         finished_at=d.time(row["finished_at"]))
