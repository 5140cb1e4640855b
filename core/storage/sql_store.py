"""The Store written once: its SQL and rules over any `Database` (SQLite file or PostgreSQL).

Writes that must see a row unchanged until commit lock it first (`dialect.row_lock`: `FOR NO KEY UPDATE` on
Postgres; nothing on SQLite, whose write lock covers the file), so writes to one conversation queue and writes to
different ones run in parallel. Claims take due rows with `dialect.claim_lock` (`FOR UPDATE SKIP LOCKED`) and
never wait for each other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from core.storage.base import LeaseLost
from core.storage.records import (
    Claim,
    Conversation,
    ConversationQuery,
    Debounce,
    Effect,
    InboundResult,
    Intent,
    Mode,
    ModelUsage,
    NewMessage,
    StoredMessage,
    TurnInputs,
)
from core.storage.rules import (applied_statuses, effect_outcome, inbound_handling, kept_after_turn, settled_at,
                                stays_due)
from core.storage.sql import Database, Dialect, Json, Row, Tx, iso
from core.storage.sql_admin import AdminSQL
from core.storage.sql_broadcasts import BroadcastSQL
from core.storage.sql_console import ConsoleSQL
from core.storage.sql_contact_tags import ContactTagsSQL
from core.storage.sql_contacts import ContactSQL
from core.storage.sql_dashboard import DashboardSQL
from core.storage.sql_echoes import EchoSQL
from core.storage.sql_observability import ObservabilitySQL
from core.storage.sql_playground import PlaygroundSQL
from core.storage.sql_preferences import PreferencesSQL
from core.storage.sql_reads import ReadsSQL
from core.storage.sql_retention import RetentionSQL
from core.storage.sql_rich import RichSQL
from core.storage.sql_templates import TemplateSQL
from core.storage.sql_usage import SENT_STATUSES, UsageSQL
from core.webhook.events import InboundMessage, StatusUpdate

# Handled messages in the order they happened: by the turn that handled them, the user's side of a turn first.
TIMELINE_ORDER = (
    "(processed_at IS NULL) {dir}, processed_at {dir}, CASE direction WHEN 'in' THEN 0 ELSE 1 END {dir}, "
    "COALESCE(wa_timestamp, created_at) {dir}, id {dir}"
)
# A conversation can be claimed: something is due by now ($3) and no live lease (a human-mode one is due only
# while bot replies decided before its hand-over are unsent).
_CLAIMABLE = "due_at IS NOT NULL AND due_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)"
# claim_due locks up to this many times what it may take, so that processes claiming at once each find rows.
CLAIM_SLACK = 3
_FIRST_EXCLUDED = 6  # claim_due's first placeholder for an excluded client
# A conversation's unanswered user messages, in WhatsApp timestamp order, then arrival.
_PENDING = """SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'in' AND processed_at IS NULL
              ORDER BY COALESCE(wa_timestamp, created_at), id"""
# Its last $2 handled messages, newest first.
_HISTORY = f"""SELECT * FROM messages WHERE conversation_id = $1 AND processed_at IS NOT NULL
               ORDER BY {TIMELINE_ORDER.format(dir='DESC')} LIMIT $2"""
# A conversation with a message written or answered since {since} (the conversation list's "active").
_ACTIVE = """EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.direction IN ('in', 'out')
                     AND m.created_at >= {since})"""
# A conversation whose contact name, user key or a message's text holds {pattern} (lower case, LIKE-escaped).
_TEXT_MATCH = """(LOWER(c.contact_name) LIKE {pattern} ESCAPE '!' OR LOWER(c.user_key) LIKE {pattern} ESCAPE '!'
                  OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.direction IN ('in', 'out')
                             AND LOWER(m.text) LIKE {pattern} ESCAPE '!'))"""
# Why a conversation written to while its client's bot is off is flagged.
BOT_OFF_REASON = "the bot is off: a person should answer"
# The bot's replies stored but not sent.
_UNSENT = """SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'out' AND role = 'assistant'
             AND status = 'pending' ORDER BY id"""


def _like_escaped(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '!' (its own %, _ and ! are not wildcards)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


class SQLStore(UsageSQL, RetentionSQL, ConsoleSQL, TemplateSQL, EchoSQL, ObservabilitySQL, RichSQL, ContactSQL,
               BroadcastSQL, PlaygroundSQL, DashboardSQL, AdminSQL, ReadsSQL, PreferencesSQL,
               ContactTagsSQL):
    """Every Store operation as SQL on a `Database`; the adapters differ only in their database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._d: Dialect = database.dialect

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    # ---------------------------------------------------------------- webhook side

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce, now: datetime) -> InboundResult:
        d = self._d

        async def write(tx: Tx) -> InboundResult:
            # The upsert locks the conversation row until commit: one writer per conversation at a time.
            conversation = await tx.fetchrow(
                """INSERT INTO conversations (client, phone_number_id, user_key, wa_id, user_id, contact_name,
                                              created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                   ON CONFLICT (client, phone_number_id, user_key) DO UPDATE SET
                       wa_id = COALESCE(excluded.wa_id, conversations.wa_id),
                       user_id = COALESCE(excluded.user_id, conversations.user_id),
                       contact_name = COALESCE(excluded.contact_name, conversations.contact_name)
                   RETURNING id, mode, due_at, pending_since,
                             (SELECT bot_enabled FROM client_switches WHERE client = $1) AS bot_enabled""",
                client, message.phone_number_id, message.user_key, message.wa_id, message.user_id,
                message.contact_name, now)
            assert conversation is not None
            # Bot off: the message waits for a person, flagged, and is never answered later.
            answer, waits = inbound_handling(message.wants_reply, conversation["mode"], conversation["bot_enabled"])
            inserted = await tx.fetchval(
                """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, wa_timestamp,
                                         processed_at, created_at)
                   VALUES ($1, $2, 'in', 'user', $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (wamid) DO NOTHING RETURNING id""",
                conversation["id"], message.wamid, message.type, message.text, Json(message.payload),
                message.wa_timestamp, None if answer else now, now)
            due_at = d.time(conversation["due_at"])
            if inserted is None:
                return InboundResult(conversation["id"], False, due_at)
            pending_since = d.time(conversation["pending_since"])
            if answer:
                due_at, pending_since = settled_at(now, pending_since, debounce)
            if waits:
                await tx.execute(
                    "UPDATE conversations SET needs_attention = TRUE, attention_reason = $1 WHERE id = $2",
                    BOT_OFF_REASON, conversation["id"])
            await tx.execute(
                """UPDATE conversations SET due_at = $1, pending_since = $2, updated_at = $3,
                       last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < $4 THEN $4
                                              ELSE last_inbound_at END
                   WHERE id = $5""",
                due_at, pending_since, now, message.wa_timestamp or now, conversation["id"])
            if not answer:  # handled on arrival (silent, taken over, bot off); the rest count when their turn does
                await self._count_usage(tx, client, conversation["id"], now, messages_in=1)
            return InboundResult(conversation["id"], True, due_at)

        # Grouped with other acknowledgements, in the order of the conversation rows they lock.
        key = f"c\x00{client}\x00{message.phone_number_id}\x00{message.user_key}"
        return await self.database.write(write, order=key)

    async def record_status(self, client: str, update: StatusUpdate, now: datetime) -> bool:
        async def write(tx: Tx) -> bool:
            # A send's outcome and a status report for the same wamid take turns: a status that races the send's
            # own response is never missed.
            await tx.serialize_on(update.wamid)
            await tx.execute(
                """INSERT INTO message_statuses (client, wamid, status, timestamp, payload, recorded_at)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client, wamid, status) DO NOTHING""",
                client, update.wamid, update.status, update.timestamp, Json(update.payload), now)
            lock = f"{self._d.row_lock} OF m" if self._d.row_lock else ""
            current = await tx.fetchrow(
                f"""SELECT m.status, m.error FROM messages m JOIN conversations c ON c.id = m.conversation_id
                    WHERE m.wamid = $1 AND c.client = $2 {lock}""",
                update.wamid, client)
            if current is None:
                # Only a miss pays for this: a broadcast send whose record a crash lost, named by its callback data.
                return await self._link_broadcast_status(tx, client, update.wamid, update.payload)
            # Every earlier report was applied when it came or when the send was recorded (mark_sent applies them
            # all), and the rule only ever moves forward: this report alone decides whether the message moves.
            status, error, changed = applied_statuses(current["status"], self._d.json(current["error"]),
                                                      [(update.status, update.payload)])
            if changed:
                await tx.execute("UPDATE messages SET status = $1, error = $2 WHERE wamid = $3",
                                 status, Json(error), update.wamid)
            return True

        return await self.database.write(write, order=f"s\x00{update.wamid}")

    # ---------------------------------------------------------------- scheduler side

    async def next_due_at(self) -> datetime | None:
        # A leased conversation becomes claimable only when its lease ends.
        value = await self.database.read(lambda tx: tx.fetchval(
            """SELECT MIN(CASE WHEN lease_until > due_at THEN lease_until ELSE due_at END) FROM conversations
               WHERE due_at IS NOT NULL"""))
        return self._d.time(value)

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int,
                        exclude_clients: Collection[str] = (), per_client: int | None = None) -> list[Claim]:
        lease_until = now + timedelta(seconds=lease_seconds)
        excluded = sorted(exclude_clients)
        skip = (f"AND client NOT IN ({', '.join(f'${_FIRST_EXCLUDED + n}' for n in range(len(excluded)))})"
                if excluded else "")
        # 1. rank a snapshot of the due conversations within each client; 2. lock the earliest due of them,
        # skipping rows other processes hold (each row is re-checked as it is now when locked), CLAIM_SLACK
        # times what may be taken, so processes claiming at once take different rows, not none; 3. of the
        # locked ones take at most per_client per client, limit in all. Locked rows not taken are let go at commit.
        sql = f"""WITH ranked AS (
                      SELECT id, ROW_NUMBER() OVER (PARTITION BY client ORDER BY due_at, id) AS rank
                      FROM conversations WHERE {_CLAIMABLE} {skip}),
                  locked AS MATERIALIZED (
                      SELECT id, client, due_at FROM conversations
                      WHERE id IN (SELECT id FROM ranked WHERE rank <= $4 * {CLAIM_SLACK}) AND {_CLAIMABLE}
                      ORDER BY due_at, id
                      LIMIT $5 * {CLAIM_SLACK}
                      {self._d.claim_lock}),
                  chosen AS (
                      SELECT id FROM (SELECT id, due_at,
                                             ROW_NUMBER() OVER (PARTITION BY client ORDER BY due_at, id) AS rank
                                      FROM locked) AS mine
                      WHERE rank <= $4 ORDER BY due_at, id LIMIT $5)
                  UPDATE conversations SET lease_owner = $1, lease_until = $2
                  WHERE id IN (SELECT id FROM chosen)
                  RETURNING *"""
        rows = await self.database.write(
            lambda tx: tx.fetch(sql, owner, lease_until, now, per_client or limit, limit, *excluded))
        claims = [Claim(self._conversation(row), owner, lease_until) for row in rows]
        return sorted(claims, key=lambda claim: (claim.conversation.due_at, claim.conversation.id))

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        lease_until = now + timedelta(seconds=lease_seconds)
        renewed = await self.database.write(lambda tx: tx.execute(
            "UPDATE conversations SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND lease_until > $4",
            lease_until, claim.conversation.id, claim.owner, now))
        return Claim(claim.conversation, claim.owner, lease_until) if renewed else None

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        await self.database.write(lambda tx: tx.execute(
            """UPDATE conversations SET lease_owner = NULL, lease_until = NULL, due_at = COALESCE($1, due_at)
               WHERE id = $2 AND lease_owner = $3""",
            retry_at, claim.conversation.id, claim.owner))

    async def pending_batch(self, conversation_id: int) -> list[StoredMessage]:
        rows = await self.database.read(lambda tx: tx.fetch(_PENDING, conversation_id))
        return [self._message(row) for row in rows]

    async def history(self, conversation_id: int, limit: int) -> list[StoredMessage]:
        rows = await self.database.read(lambda tx: tx.fetch(_HISTORY, conversation_id, limit))
        return [self._message(row) for row in reversed(rows)]

    async def turn_inputs(self, conversation_id: int, history_limit: int) -> TurnInputs:
        async def read(tx: Tx) -> tuple[list[Row], list[Row], list[Row]]:
            unsent = await tx.fetch(_UNSENT, conversation_id)
            batch = await tx.fetch(_PENDING, conversation_id)
            history = await tx.fetch(_HISTORY, conversation_id, history_limit) if batch else []
            return unsent, batch, history

        unsent, batch, history = await self.database.read(read)
        return TurnInputs([self._message(row) for row in unsent], [self._message(row) for row in batch],
                          [self._message(row) for row in reversed(history)])

    async def update_text(self, message_id: int, text: str) -> None:
        await self.database.write(lambda tx: tx.execute("UPDATE messages SET text = $1 WHERE id = $2", text, message_id))

    async def set_media_path(self, message_id: int, path: str) -> None:
        await self.database.write(lambda tx: tx.execute(
            "UPDATE messages SET media_path = $1 WHERE id = $2", path, message_id))

    async def save_turn(self, claim: Claim, batch: list[StoredMessage], batch_id: str, produced: list[NewMessage],
                        now: datetime, intents: Sequence[Intent] = (),
                        usage: Sequence[ModelUsage] = ()) -> list[StoredMessage]:
        async def write(tx: Tx) -> list[StoredMessage]:
            conversation_id = claim.conversation.id
            row = await tx.fetchrow(f"SELECT mode, lease_owner FROM conversations WHERE id = $1 {self._d.row_lock}",
                                    conversation_id)
            if row is None or row["lease_owner"] != claim.owner:
                raise LeaseLost(f"conversation {conversation_id} is no longer held by {claim.owner}")
            produced_now = kept_after_turn(row["mode"], produced)
            handled = [await tx.fetchval(
                "UPDATE messages SET processed_at = $1, batch_id = $2 WHERE id = $3 AND processed_at IS NULL "
                "RETURNING created_at", now, batch_id, message.id) for message in batch]
            await self._count_handled(tx, claim.conversation.client, conversation_id, handled)
            outbound = []
            for item in produced_now:
                stored = await self._insert(tx, conversation_id, item, batch_id, now)
                if item.direction == "out":
                    outbound.append(stored)
            await tx.execute(
                """UPDATE conversations SET prompt_tokens = prompt_tokens + $1, completion_tokens = completion_tokens + $2,
                       turn_failures = 0, updated_at = $3 WHERE id = $4""",
                sum(item.prompt_tokens for item in produced), sum(item.completion_tokens for item in produced),
                now, conversation_id)
            await self._count_models(tx, claim.conversation.client, conversation_id, now, usage)
            await self._apply_intents(tx, claim.conversation, batch_id, intents, now)
            return sorted(outbound, key=lambda message: message.id)

        return await self.database.write(write)

    async def unsent_replies(self, conversation_id: int) -> list[StoredMessage]:
        rows = await self.database.read(lambda tx: tx.fetch(_UNSENT, conversation_id))
        return [self._message(row) for row in rows]

    async def mark_sent(self, message_id: int, wamid: str | None, status: str, error: dict[str, Any] | None) -> None:
        async def write(tx: Tx) -> None:
            if wamid:
                await tx.serialize_on(wamid)
            await self._record_send(tx, message_id, wamid, status, error)

        await self.database.write(write)

    async def _record_send(self, tx: Tx, message_id: int, wamid: str | None, status: str,
                           error: dict[str, Any] | None) -> None:
        """mark_sent's steps in the caller's transaction (a broadcast records its recipient in the same one)."""
        if status in SENT_STATUSES:
            await self._count_sent(tx, message_id)
        client = await tx.fetchval(
            """UPDATE messages SET wamid = $1, status = $2, error = $3 WHERE id = $4
               RETURNING (SELECT client FROM conversations c WHERE c.id = messages.conversation_id)""",
            wamid, status, Json(error), message_id)
        if wamid and client is not None:
            await self._apply_statuses(tx, client, wamid)

    async def finish_turn(self, claim: Claim, now: datetime) -> None:
        async def write(tx: Tx) -> None:
            conversation_id = claim.conversation.id
            # Lock first: a message recorded concurrently is either seen below or waits for this commit.
            await tx.execute(f"SELECT 1 FROM conversations WHERE id = $1 {self._d.row_lock}", conversation_id)
            pending = await tx.fetchval(
                "SELECT MIN(created_at) FROM messages WHERE conversation_id = $1 AND direction = 'in' AND processed_at IS NULL",
                conversation_id)
            unsent = await tx.fetchval(
                "SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'out' AND role = 'assistant' "
                "AND status = 'pending' LIMIT 1",
                conversation_id)
            keep_due = stays_due(pending, unsent is not None)
            await tx.execute(
                """UPDATE conversations SET pending_since = $1, due_at = CASE WHEN $2 THEN COALESCE(due_at, $3) END,
                       lease_owner = NULL, lease_until = NULL, turn_failures = 0, updated_at = $3
                   WHERE id = $4 AND lease_owner = $5""",
                self._d.time(pending), keep_due, now, conversation_id, claim.owner)

        await self.database.write(write)

    async def count_failure(self, claim: Claim, prompt_tokens: int, completion_tokens: int,
                            usage: Sequence[ModelUsage] = (), now: datetime | None = None) -> int:
        if usage and now is None:
            raise ValueError("count_failure: the ledger needs `now` with `usage`")

        async def write(tx: Tx) -> Any:
            count = await tx.fetchval(
                """UPDATE conversations SET turn_failures = turn_failures + 1, prompt_tokens = prompt_tokens + $1,
                       completion_tokens = completion_tokens + $2 WHERE id = $3 AND lease_owner = $4
                   RETURNING turn_failures""",
                prompt_tokens, completion_tokens, claim.conversation.id, claim.owner)
            if count is not None and now is not None:
                await self._count_models(tx, claim.conversation.client, claim.conversation.id, now, usage)
            return count

        count = await self.database.write(write)
        if count is None:
            raise LeaseLost(f"conversation {claim.conversation.id} is no longer held by {claim.owner}")
        return int(count)

    async def flag(self, conversation_id: int, reason: str) -> None:
        await self.database.write(lambda tx: tx.execute(
            "UPDATE conversations SET needs_attention = TRUE, attention_reason = $1 WHERE id = $2",
            reason, conversation_id))

    # ---------------------------------------------------------------- operators

    async def set_mode(self, client: str, conversation_id: int, mode: Mode, now: datetime) -> Conversation | None:
        async def write(tx: Tx) -> Conversation | None:
            found = await tx.fetchval(
                f"SELECT 1 FROM conversations WHERE id = $1 AND client = $2 {self._d.row_lock}", conversation_id, client)
            if found is None:
                return None
            if mode == "human":
                # The operator now answers what was waiting, so the bot must not.
                await self._hand_over_waiting(tx, client, conversation_id, now)
                row = await tx.fetchrow(
                    """UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, $1), last_operator_at = $1,
                           due_at = NULL, pending_since = NULL, updated_at = $1 WHERE id = $2 RETURNING *""",
                    now, conversation_id)
            else:
                row = await tx.fetchrow(
                    "UPDATE conversations SET mode = 'bot', human_since = NULL, updated_at = $1 WHERE id = $2 RETURNING *",
                    now, conversation_id)
            return self._conversation(row) if row is not None else None

        return await self.database.write(write)

    async def resolve(self, client: str, conversation_id: int, now: datetime) -> Conversation | None:
        row = await self.database.write(lambda tx: tx.fetchrow(
            """UPDATE conversations SET needs_attention = FALSE, attention_reason = NULL, updated_at = $1
               WHERE id = $2 AND client = $3 RETURNING *""", now, conversation_id, client))
        return self._conversation(row) if row is not None else None

    async def bot_enabled(self, client: str) -> bool:
        enabled = await self.database.read(lambda tx: tx.fetchval(
            "SELECT bot_enabled FROM client_switches WHERE client = $1", client))
        return enabled is None or bool(enabled)

    async def set_bot_enabled(self, client: str, enabled: bool, now: datetime) -> bool:
        stored = await self.database.write(lambda tx: tx.fetchval(
            """INSERT INTO client_switches (client, bot_enabled, updated_at) VALUES ($1, $2, $3)
               ON CONFLICT (client) DO UPDATE SET bot_enabled = excluded.bot_enabled, updated_at = excluded.updated_at
               RETURNING bot_enabled""", client, enabled, now))
        return bool(stored)

    async def add_operator_message(self, conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
        async def write(tx: Tx) -> StoredMessage:
            stored = await self._insert(tx, conversation_id, message, None, now)
            await tx.execute("UPDATE conversations SET last_operator_at = $1, updated_at = $1 WHERE id = $2",
                             now, conversation_id)
            return stored

        return await self.database.write(write)

    async def release_idle_takeovers(self, client: str, idle_since: datetime) -> int:
        return await self.database.write(lambda tx: tx.execute(
            """UPDATE conversations SET mode = 'bot', human_since = NULL
               WHERE client = $1 AND mode = 'human' AND COALESCE(last_operator_at, human_since) < $2""",
            client, idle_since))

    # ---------------------------------------------------------------- clients' own data

    async def get_document(self, client: str, key: str) -> Any | None:
        value = await self.database.read(lambda tx: tx.fetchval(
            "SELECT data FROM client_documents WHERE client = $1 AND key = $2", client, key))
        return self._d.json(value)

    async def put_document(self, client: str, key: str, data: Any, now: datetime) -> None:
        await self.database.write(lambda tx: tx.execute(
            """INSERT INTO client_documents (client, key, data, updated_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (client, key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at""",
            client, key, Json(data), now))

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None,
                         now: datetime) -> int:
        record_id = await self.database.write(lambda tx: tx.fetchval(
            """INSERT INTO client_records (client, kind, conversation_id, data, created_at) VALUES ($1, $2, $3, $4, $5)
               RETURNING id""",
            client, kind, conversation_id, Json(data), now))
        return int(record_id)

    async def list_records(self, client: str, kind: str, limit: int, offset: int) -> list[dict[str, Any]]:
        rows = await self.database.read(lambda tx: tx.fetch(
            "SELECT * FROM client_records WHERE client = $1 AND kind = $2 ORDER BY id LIMIT $3 OFFSET $4",
            client, kind, limit, offset))
        return [{"id": row["id"], "conversation_id": row["conversation_id"],
                 "created_at": iso(self._d.time(row["created_at"])), "ref": row["ref"],
                 "data": self._d.json(row["data"])} for row in rows]

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        rows = await self.database.read(lambda tx: tx.fetch(
            """SELECT ref, data FROM client_records WHERE client = $1 AND kind = $2 AND conversation_id = $3
               AND created_at >= $4 ORDER BY id""", client, kind, conversation_id, since))
        return [{"ref": row["ref"], "data": self._d.json(row["data"])} for row in rows]

    # ---------------------------------------------------------------- effects outbox

    async def claim_effects(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Effect]:
        rows = await self.database.write(lambda tx: tx.fetch(
            f"""UPDATE effects SET lease_owner = $1, lease_until = $2
                WHERE id IN (SELECT id FROM effects WHERE due_at IS NOT NULL AND due_at <= $3
                               AND (lease_until IS NULL OR lease_until <= $3)
                             ORDER BY due_at LIMIT $4 {self._d.claim_lock})
                RETURNING *""", owner, now + timedelta(seconds=lease_seconds), now, limit))
        return [self._effect(row) for row in rows]

    async def settle_effect(self, effect: Effect, owner: str, now: datetime, *, error: str | None = None,
                            retry_at: datetime | None = None) -> bool:
        status = effect_outcome(error, retry_at)
        touched = await self.database.write(lambda tx: tx.execute(
            """UPDATE effects SET status = $1, attempts = attempts + 1, last_error = $2, due_at = $3, done_at = $4,
                   lease_owner = NULL, lease_until = NULL
               WHERE id = $5 AND lease_owner = $6""", status, error, retry_at, now if status == "done" else None,
            effect.id, owner))
        return bool(touched)

    async def list_effects(self, client: str, conversation_id: int) -> list[Effect]:
        rows = await self.database.read(lambda tx: tx.fetch(
            "SELECT * FROM effects WHERE client = $1 AND conversation_id = $2 ORDER BY id", client, conversation_id))
        return [self._effect(row) for row in rows]

    # ---------------------------------------------------------------- reads for the REST API

    async def list_conversations(self, client: str, limit: int, offset: int,
                                 query: ConversationQuery = ConversationQuery()) -> list[Conversation]:
        args: list[Any] = [client]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = ["c.client = $1"]
        if query.mode is not None:
            where.append(f"c.mode = {arg(query.mode)}")
        if query.needs_attention is not None:
            where.append(f"c.needs_attention = {arg(query.needs_attention)}")
        if query.updated_since is not None:
            where.append(f"c.updated_at >= {arg(query.updated_since)}")
        if query.text:
            pattern = arg("%" + _like_escaped(query.text.lower()) + "%")
            where.append(_TEXT_MATCH.format(pattern=pattern))
        order = "c.updated_at DESC, c.id DESC"
        if query.active_since is not None:
            active = _ACTIVE.format(since=arg(query.active_since))
            order = f"{active} DESC, {order}"
            if query.active is not None:
                where.append(active if query.active else f"NOT {active}")
        sql = (f"SELECT c.* FROM conversations c WHERE {' AND '.join(where)} ORDER BY {order} "
               f"LIMIT {arg(limit)} OFFSET {arg(offset)}")
        rows = await self.database.read(lambda tx: tx.fetch(sql, *args))
        return [self._conversation(row) for row in rows]

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None:
        row = await self.database.read(lambda tx: tx.fetchrow(
            "SELECT * FROM conversations WHERE client = $1 AND id = $2", client, conversation_id))
        return self._conversation(row) if row else None

    async def find_conversation(self, client: str, phone_number_id: str, user_key: str) -> Conversation | None:
        row = await self.database.read(lambda tx: tx.fetchrow(
            "SELECT * FROM conversations WHERE client = $1 AND phone_number_id = $2 AND user_key = $3",
            client, phone_number_id, user_key))
        return self._conversation(row) if row else None

    async def list_messages(self, conversation_id: int, limit: int, offset: int) -> list[StoredMessage]:
        rows = await self.database.read(lambda tx: tx.fetch(
            f"SELECT * FROM messages WHERE conversation_id = $1 ORDER BY {TIMELINE_ORDER.format(dir='ASC')} LIMIT $2 OFFSET $3",
            conversation_id, limit, offset))
        return [self._message(row) for row in rows]

    async def get_message(self, message_id: int) -> StoredMessage | None:
        row = await self.database.read(lambda tx: tx.fetchrow("SELECT * FROM messages WHERE id = $1", message_id))
        return self._message(row) if row else None

    # ---------------------------------------------------------------- shared steps

    async def _insert(self, tx: Tx, conversation_id: int, item: NewMessage, batch_id: str | None,
                      now: datetime) -> StoredMessage:
        row = await tx.fetchrow(
            """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, status, error,
                                     batch_id, category, processed_at, prompt_tokens, completion_tokens, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $12)
               RETURNING *""",
            conversation_id, item.wamid, item.direction, item.role, item.type, item.text, Json(item.payload),
            item.status, Json(item.error), batch_id, item.category, now, item.prompt_tokens, item.completion_tokens)
        assert row is not None
        return self._message(row)

    async def _apply_statuses(self, tx: Tx, client: str, wamid: str) -> None:
        """Move the message forward by every status recorded for it (some beat the send's own response to us)."""
        current = await tx.fetchrow(f"SELECT status, error FROM messages WHERE wamid = $1 {self._d.row_lock}", wamid)
        if current is None:
            return
        reports = [(row["status"], self._d.json(row["payload"])) for row in await tx.fetch(
            "SELECT status, payload FROM message_statuses WHERE client = $1 AND wamid = $2", client, wamid)]
        status, error, changed = applied_statuses(current["status"], self._d.json(current["error"]), reports)
        if changed:
            await tx.execute("UPDATE messages SET status = $1, error = $2 WHERE wamid = $3", status, Json(error), wamid)

    async def _hand_over_waiting(self, tx: Tx, client: str, conversation_id: int, now: datetime) -> None:
        """Mark the unanswered messages handled: a person answers them, not the bot."""
        rows = await tx.fetch("UPDATE messages SET processed_at = $1 WHERE conversation_id = $2 AND direction = 'in' "
                              "AND processed_at IS NULL RETURNING created_at", now, conversation_id)
        await self._count_handled(tx, client, conversation_id, [row["created_at"] for row in rows])

    async def _apply_intents(self, tx: Tx, conversation: Conversation, batch_id: str, intents: Sequence[Intent],
                             now: datetime) -> None:
        """What the turn decided, in its own transaction: records and a hand-over now, emails into the outbox."""
        for intent in intents:
            if intent.kind == "record":
                await tx.execute(
                    "INSERT INTO client_records (client, kind, conversation_id, data, created_at, ref) "
                    "VALUES ($1, $2, $3, $4, $5, $6)", conversation.client, intent.data["kind"], conversation.id,
                    Json(intent.data["data"]), now, intent.data.get("ref"))
            elif intent.kind == "handover":
                # As an operator's takeover: what was waiting is theirs now; the bot's unsent reply still goes out.
                await self._hand_over_waiting(tx, conversation.client, conversation.id, now)
                await tx.execute("""UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, $1),
                                        last_operator_at = $1, pending_since = NULL WHERE id = $2""",
                                 now, conversation.id)
            else:
                await tx.execute(
                    """INSERT INTO effects (client, conversation_id, batch_id, key, kind, data, due_at, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (batch_id, key) DO NOTHING""",
                    conversation.client, conversation.id, intent.batch or batch_id, intent.key, intent.kind,
                    Json(intent.data), now)

    # ---------------------------------------------------------------- rows to records

    def _effect(self, row: Row) -> Effect:
        d = self._d
        return Effect(id=row["id"], client=row["client"], conversation_id=row["conversation_id"],
                      batch_id=row["batch_id"], key=row["key"], kind=row["kind"], data=d.json(row["data"]),
                      status=row["status"], attempts=row["attempts"], last_error=row["last_error"],
                      due_at=d.time(row["due_at"]), created_at=d.time(row["created_at"]),  # type: ignore[arg-type]
                      done_at=d.time(row["done_at"]))

    def _conversation(self, row: Row) -> Conversation:
        d = self._d
        return Conversation(
            id=row["id"], client=row["client"], phone_number_id=row["phone_number_id"], user_key=row["user_key"],
            wa_id=row["wa_id"], user_id=row["user_id"], contact_name=row["contact_name"], mode=row["mode"],
            due_at=d.time(row["due_at"]), last_inbound_at=d.time(row["last_inbound_at"]),
            prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
            created_at=d.time(row["created_at"]), updated_at=d.time(row["updated_at"]),  # type: ignore[arg-type]
            human_since=d.time(row["human_since"]), last_operator_at=d.time(row["last_operator_at"]),
            needs_attention=bool(row["needs_attention"]), attention_reason=row["attention_reason"],
        )

    def _message(self, row: Row) -> StoredMessage:
        d = self._d
        return StoredMessage(
            id=row["id"], conversation_id=row["conversation_id"], wamid=row["wamid"], direction=row["direction"],
            role=row["role"], type=row["type"], text=row["text"], payload=d.json(row["payload"]),
            status=row["status"], error=d.json(row["error"]), wa_timestamp=d.time(row["wa_timestamp"]),
            batch_id=row["batch_id"], processed_at=d.time(row["processed_at"]),
            prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
            created_at=d.time(row["created_at"]), category=row["category"],  # type: ignore[arg-type]
            media_path=row["media_path"],
        )
