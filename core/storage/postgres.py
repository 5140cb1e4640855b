"""The production Store: PostgreSQL (Supabase) through an asyncpg pool; any number of processes share one database.

Same tables, columns and meanings as the SQLite store (supabase/migrations/). Where SQLite serialises every write
with one file lock, here each write is a short transaction that first locks the conversation row it changes
(`FOR NO KEY UPDATE`, or the upsert's own lock), so writes to one conversation queue and writes to different ones
run in parallel; claims take due rows with `FOR UPDATE SKIP LOCKED` and never wait for each other.

Connection options read from DATABASE_URL's query string (removed before asyncpg sees it):
  statement_cache_size=N  asyncpg's prepared-statement cache per connection; 0 for a pooler in transaction mode.
                          Default: 0 when the port is 6543 (Supabase's transaction pooler) or pgbouncer=true is
                          given, else asyncpg's default (100).
  pool_size=N             connections per process (default 10).
See docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from core.storage.base import LeaseLost, StoreUnavailable
from core.storage.records import (
    Claim,
    Conversation,
    Debounce,
    Effect,
    InboundResult,
    Intent,
    Mode,
    NewMessage,
    StoredMessage,
)
from core.storage.rules import applied_statuses, settled_at
from core.webhook.events import InboundMessage, StatusUpdate

T = TypeVar("T")

TABLES = ("conversations", "messages", "message_statuses", "client_documents", "client_records", "effects")
SUPABASE_TRANSACTION_POOLER_PORT = 6543
DEFAULT_POOL_SIZE = 10
# pg_advisory_xact_lock(namespace, hashtext(wamid)): a send's outcome and a status report for the same wamid
# take turns, so a status that races the send's own response is never missed.
_STATUS_LOCK = 0x5743

# Handled messages in the order they happened: by the turn that handled them, the user's side of a turn first.
TIMELINE_ORDER = (
    "COALESCE(processed_at, 'infinity') {dir}, CASE direction WHEN 'in' THEN 0 ELSE 1 END {dir}, "
    "COALESCE(wa_timestamp, created_at) {dir}, id {dir}"
)

# Errors that say the database cannot be used now (down, restarting, full, too many clients, conflicts that
# outlived the retries), as opposed to a bug in a query.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # includes a connection that was closed under us
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory, too many connections
    asyncpg.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now, query cancelled
    asyncpg.PostgresSystemError,  # class 58
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock (after retries)
    asyncpg.InternalClientError,
)
_RETRIES = 3
# A conversation can be claimed: something is due by now ($3) and no live lease (a human-mode one is due only
# while bot replies decided before its hand-over are unsent).
_CLAIMABLE = "due_at IS NOT NULL AND due_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)"
# claim_due locks up to this many times what it may take, so that processes claiming at once each find rows.
CLAIM_SLACK = 3

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class SchemaNotMigrated(StoreUnavailable):
    """The database has not been given the schema yet."""


def connection_options(dsn: str) -> tuple[str, dict[str, Any]]:
    """Split DATABASE_URL into what asyncpg takes and this store's own options (see the module's docstring)."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in ("statement_cache_size", "pool_size", "pgbouncer")}
    rest = [(key, value) for key, value in query if key not in ours]
    try:
        port = parts.port
    except ValueError:  # several hosts, or no port at all
        port = None
    pooled = ours.get("pgbouncer", "").lower() in ("1", "true", "yes") or port == SUPABASE_TRANSACTION_POOLER_PORT
    options: dict[str, Any] = {"max_size": int(ours.get("pool_size", DEFAULT_POOL_SIZE))}
    if "statement_cache_size" in ours:
        options["statement_cache_size"] = int(ours["statement_cache_size"])
    elif pooled:
        options["statement_cache_size"] = 0
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def _json_text(value: Any) -> str:
    # Postgres refuses NUL in jsonb strings: keep the rest of what Meta sent, with U+FFFD in its place.
    return _NUL_ESCAPE.sub(r"\1\\ufffd", json.dumps(value, ensure_ascii=False))


def _text(value: str | None) -> str | None:
    # ... and in text columns.
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=json.loads, schema="pg_catalog")


def _count(status: str) -> int:
    """Rows touched, from a command tag such as 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


class PostgresStore:
    """Store on PostgreSQL; safe for many processes and hosts sharing the database."""

    def __init__(self, dsn: str, *, min_size: int = 1, command_timeout: float = 30.0,
                 acquire_timeout: float = 15.0) -> None:
        self._dsn, self._options = connection_options(dsn)
        self._min_size = min(min_size, self._options["max_size"])
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None

    # ---------------------------------------------------------------- plumbing

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, write: bool) -> T:
        assert self._pool is not None, "store is not open"
        for attempt in range(_RETRIES):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    if not write:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except asyncpg.TransactionRollbackError as error:
                if attempt == _RETRIES - 1:
                    raise StoreUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from error
            except _UNAVAILABLE as error:
                raise StoreUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from error
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await self._run(fn, write=False)

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await self._run(fn, write=True)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, init=_init_connection, command_timeout=self._command_timeout,
                timeout=self._acquire_timeout, **self._options)
        except (*_UNAVAILABLE, asyncpg.PostgresError) as error:
            raise StoreUnavailable(f"PostgreSQL: cannot connect: {type(error).__name__}: {error}") from error
        try:
            missing = await self._read(lambda conn: conn.fetchval(
                "SELECT array_agg(name) FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NULL", list(TABLES)))
        except StoreUnavailable:
            await self.close()
            raise
        if missing:
            await self.close()
            raise SchemaNotMigrated(
                f"PostgreSQL database has no table {', '.join(missing)}: apply the schema first with "
                "`python -m core migrate` (the Procfile's release phase runs it; `supabase db push` works too)")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (*_UNAVAILABLE, asyncpg.PostgresError):
                pool.terminate()

    # ---------------------------------------------------------------- webhook side

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce, now: datetime) -> InboundResult:
        async def write(conn: asyncpg.Connection) -> InboundResult:
            # The upsert locks the conversation row until commit: one writer per conversation at a time.
            conversation = await conn.fetchrow(
                """INSERT INTO conversations (client, phone_number_id, user_key, wa_id, user_id, contact_name,
                                              created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                   ON CONFLICT (client, phone_number_id, user_key) DO UPDATE SET
                       wa_id = COALESCE(excluded.wa_id, conversations.wa_id),
                       user_id = COALESCE(excluded.user_id, conversations.user_id),
                       contact_name = COALESCE(excluded.contact_name, conversations.contact_name)
                   RETURNING id, mode, due_at, pending_since""",
                client, message.phone_number_id, message.user_key, message.wa_id, message.user_id,
                _text(message.contact_name), now)
            answer = message.wants_reply and conversation["mode"] == "bot"
            inserted = await conn.fetchval(
                """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, wa_timestamp,
                                         processed_at, created_at)
                   VALUES ($1, $2, 'in', 'user', $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (wamid) DO NOTHING RETURNING id""",
                conversation["id"], message.wamid, message.type, _text(message.text), message.payload,
                message.wa_timestamp, None if answer else now, now)
            if inserted is None:
                return InboundResult(conversation["id"], False, conversation["due_at"])
            due_at = conversation["due_at"]
            pending_since = conversation["pending_since"]
            if answer:
                due_at, pending_since = settled_at(now, pending_since, debounce)
            await conn.execute(
                """UPDATE conversations SET due_at = $1, pending_since = $2, updated_at = $3,
                       last_inbound_at = GREATEST(last_inbound_at, $4)
                   WHERE id = $5""",
                due_at, pending_since, now, message.wa_timestamp or now, conversation["id"])
            return InboundResult(conversation["id"], True, due_at)

        return await self._write(write)

    async def record_status(self, client: str, update: StatusUpdate, now: datetime) -> bool:
        async def write(conn: asyncpg.Connection) -> bool:
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _STATUS_LOCK, update.wamid)
            await conn.execute(
                """INSERT INTO message_statuses (client, wamid, status, timestamp, payload, recorded_at)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client, wamid, status) DO NOTHING""",
                client, update.wamid, update.status, update.timestamp, update.payload, now)
            found = await conn.fetchval(
                """SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.wamid = $1 AND c.client = $2""",
                update.wamid, client)
            if found is None:
                return False
            await _apply_statuses(conn, client, update.wamid)
            return True

        return await self._write(write)

    # ---------------------------------------------------------------- scheduler side

    async def next_due_at(self) -> datetime | None:
        # A leased conversation becomes claimable only when its lease ends (GREATEST ignores a NULL lease).
        return await self._read(lambda conn: conn.fetchval(
            "SELECT MIN(GREATEST(due_at, lease_until)) FROM conversations WHERE due_at IS NOT NULL"))

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int,
                        exclude_clients: Collection[str] = (), per_client: int | None = None) -> list[Claim]:
        lease_until = now + timedelta(seconds=lease_seconds)

        async def write(conn: asyncpg.Connection) -> list[Claim]:
            # 1. rank a snapshot of the due conversations within each client; 2. lock the earliest due of them,
            # skipping rows other processes hold (each row is re-checked as it is now when locked), CLAIM_SLACK
            # times what may be taken, so processes claiming at once take different rows, not none; 3. of the
            # locked ones take at most per_client per client, limit in all. Locked rows not taken are let go at commit.
            rows = await conn.fetch(
                f"""WITH ranked AS (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY client ORDER BY due_at, id) AS rank
                        FROM conversations
                        WHERE {_CLAIMABLE} AND NOT (client = ANY($4::text[]))),
                    locked AS MATERIALIZED (
                        SELECT id, client, due_at FROM conversations
                        WHERE id IN (SELECT id FROM ranked WHERE rank <= $5 * {CLAIM_SLACK}) AND {_CLAIMABLE}
                        ORDER BY due_at, id
                        LIMIT $6 * {CLAIM_SLACK}
                        FOR UPDATE SKIP LOCKED),
                    chosen AS (
                        SELECT id FROM (SELECT id, due_at,
                                               ROW_NUMBER() OVER (PARTITION BY client ORDER BY due_at, id) AS rank
                                        FROM locked) AS mine
                        WHERE rank <= $5 ORDER BY due_at, id LIMIT $6)
                    UPDATE conversations c SET lease_owner = $1, lease_until = $2
                    FROM chosen WHERE c.id = chosen.id
                    RETURNING c.*""",
                owner, lease_until, now, sorted(exclude_clients), per_client or limit, limit)
            claims = [Claim(_conversation(row), owner, lease_until) for row in rows]
            return sorted(claims, key=lambda claim: (claim.conversation.due_at, claim.conversation.id))

        return await self._write(write)

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        lease_until = now + timedelta(seconds=lease_seconds)
        status = await self._write(lambda conn: conn.execute(
            "UPDATE conversations SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND lease_until > $4",
            lease_until, claim.conversation.id, claim.owner, now))
        return Claim(claim.conversation, claim.owner, lease_until) if _count(status) else None

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        await self._write(lambda conn: conn.execute(
            """UPDATE conversations SET lease_owner = NULL, lease_until = NULL, due_at = COALESCE($1, due_at)
               WHERE id = $2 AND lease_owner = $3""",
            retry_at, claim.conversation.id, claim.owner))

    async def pending_batch(self, conversation_id: int) -> list[StoredMessage]:
        rows = await self._read(lambda conn: conn.fetch(
            """SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'in' AND processed_at IS NULL
               ORDER BY COALESCE(wa_timestamp, created_at), id""",
            conversation_id))
        return [_message(row) for row in rows]

    async def history(self, conversation_id: int, limit: int) -> list[StoredMessage]:
        rows = await self._read(lambda conn: conn.fetch(
            f"""SELECT * FROM messages WHERE conversation_id = $1 AND processed_at IS NOT NULL
                ORDER BY {TIMELINE_ORDER.format(dir='DESC')} LIMIT $2""",
            conversation_id, limit))
        return [_message(row) for row in reversed(rows)]

    async def update_text(self, message_id: int, text: str) -> None:
        await self._write(lambda conn: conn.execute("UPDATE messages SET text = $1 WHERE id = $2", _text(text), message_id))

    async def set_media_path(self, message_id: int, path: str) -> None:
        await self._write(lambda conn: conn.execute("UPDATE messages SET media_path = $1 WHERE id = $2", path, message_id))

    async def save_turn(self, claim: Claim, batch: list[StoredMessage], batch_id: str, produced: list[NewMessage],
                        now: datetime, intents: Sequence[Intent] = ()) -> list[StoredMessage]:
        async def write(conn: asyncpg.Connection) -> list[StoredMessage]:
            conversation_id = claim.conversation.id
            row = await conn.fetchrow("SELECT mode, lease_owner FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
                                      conversation_id)
            if row["lease_owner"] != claim.owner:
                raise LeaseLost(f"conversation {conversation_id} is no longer held by {claim.owner}")
            mode = row["mode"]
            if mode != "bot":
                # An operator took over while the model was thinking: the reply is not sent, the steps are kept.
                produced_now = [item for item in produced if item.direction != "out"]
            else:
                produced_now = produced
            await conn.execute(
                "UPDATE messages SET processed_at = $1, batch_id = $2 WHERE id = ANY($3::bigint[]) AND processed_at IS NULL",
                now, batch_id, [message.id for message in batch])
            outbound = []
            for item in produced_now:
                stored = await _insert(conn, conversation_id, item, batch_id, now)
                if item.direction == "out":
                    outbound.append(stored)
            await conn.execute(
                """UPDATE conversations SET prompt_tokens = prompt_tokens + $1, completion_tokens = completion_tokens + $2,
                       turn_failures = 0, updated_at = $3 WHERE id = $4""",
                sum(item.prompt_tokens for item in produced), sum(item.completion_tokens for item in produced),
                now, conversation_id)
            await _apply_intents(conn, claim.conversation, batch_id, intents, now)
            return sorted(outbound, key=lambda message: message.id)

        return await self._write(write)

    async def unsent_replies(self, conversation_id: int) -> list[StoredMessage]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'out' AND role = 'assistant' "
            "AND status = 'pending' ORDER BY id",
            conversation_id))
        return [_message(row) for row in rows]

    async def mark_sent(self, message_id: int, wamid: str | None, status: str, error: dict[str, Any] | None) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            if wamid:
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _STATUS_LOCK, wamid)
            client = await conn.fetchval(
                """UPDATE messages m SET wamid = $1, status = $2, error = $3 FROM conversations c
                   WHERE m.id = $4 AND c.id = m.conversation_id RETURNING c.client""",
                wamid, status, error, message_id)
            if wamid and client is not None:
                await _apply_statuses(conn, client, wamid)

        await self._write(write)

    async def finish_turn(self, claim: Claim, now: datetime) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            conversation_id = claim.conversation.id
            # Lock first: a message recorded concurrently is either seen below or waits for this commit.
            await conn.execute("SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conversation_id)
            pending = await conn.fetchval(
                "SELECT MIN(created_at) FROM messages WHERE conversation_id = $1 AND direction = 'in' AND processed_at IS NULL",
                conversation_id)
            unsent = await conn.fetchval(
                "SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'out' AND role = 'assistant' "
                "AND status = 'pending' LIMIT 1",
                conversation_id)
            keep_due = pending is not None or unsent is not None
            await conn.execute(
                """UPDATE conversations SET pending_since = $1, due_at = CASE WHEN $2 THEN COALESCE(due_at, $3) END,
                       lease_owner = NULL, lease_until = NULL, turn_failures = 0, updated_at = $3
                   WHERE id = $4 AND lease_owner = $5""",
                pending, keep_due, now, conversation_id, claim.owner)

        await self._write(write)

    async def count_failure(self, claim: Claim, prompt_tokens: int, completion_tokens: int) -> int:
        count = await self._write(lambda conn: conn.fetchval(
            """UPDATE conversations SET turn_failures = turn_failures + 1, prompt_tokens = prompt_tokens + $1,
                   completion_tokens = completion_tokens + $2 WHERE id = $3 AND lease_owner = $4 RETURNING turn_failures""",
            prompt_tokens, completion_tokens, claim.conversation.id, claim.owner))
        if count is None:
            raise LeaseLost(f"conversation {claim.conversation.id} is no longer held by {claim.owner}")
        return int(count)

    async def flag(self, conversation_id: int, reason: str) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE conversations SET needs_attention = true, attention_reason = $1 WHERE id = $2",
            _text(reason), conversation_id))

    # ---------------------------------------------------------------- operators

    async def set_mode(self, client: str, conversation_id: int, mode: Mode, now: datetime) -> Conversation | None:
        async def write(conn: asyncpg.Connection) -> Conversation | None:
            found = await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1 AND client = $2 FOR NO KEY UPDATE",
                                        conversation_id, client)
            if found is None:
                return None
            if mode == "human":
                # The operator now answers what was waiting, so the bot must not.
                await conn.execute(
                    "UPDATE messages SET processed_at = $1 WHERE conversation_id = $2 AND direction = 'in' AND processed_at IS NULL",
                    now, conversation_id)
                row = await conn.fetchrow(
                    """UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, $1), last_operator_at = $1,
                           due_at = NULL, pending_since = NULL, updated_at = $1 WHERE id = $2 RETURNING *""",
                    now, conversation_id)
            else:
                row = await conn.fetchrow(
                    "UPDATE conversations SET mode = 'bot', human_since = NULL, updated_at = $1 WHERE id = $2 RETURNING *",
                    now, conversation_id)
            return _conversation(row)

        return await self._write(write)

    async def add_operator_message(self, conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
        async def write(conn: asyncpg.Connection) -> StoredMessage:
            stored = await _insert(conn, conversation_id, message, None, now)
            await conn.execute("UPDATE conversations SET last_operator_at = $1, updated_at = $1 WHERE id = $2",
                               now, conversation_id)
            return stored

        return await self._write(write)

    async def release_idle_takeovers(self, client: str, idle_since: datetime) -> int:
        status = await self._write(lambda conn: conn.execute(
            """UPDATE conversations SET mode = 'bot', human_since = NULL
               WHERE client = $1 AND mode = 'human' AND COALESCE(last_operator_at, human_since) < $2""",
            client, idle_since))
        return _count(status)

    # ---------------------------------------------------------------- clients' own data

    async def get_document(self, client: str, key: str) -> Any | None:
        return await self._read(lambda conn: conn.fetchval(
            "SELECT data FROM client_documents WHERE client = $1 AND key = $2", client, key))

    async def put_document(self, client: str, key: str, data: Any, now: datetime) -> None:
        await self._write(lambda conn: conn.execute(
            """INSERT INTO client_documents (client, key, data, updated_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (client, key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at""",
            client, key, data, now))

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None,
                         now: datetime) -> int:
        return await self._write(lambda conn: conn.fetchval(
            """INSERT INTO client_records (client, kind, conversation_id, data, created_at) VALUES ($1, $2, $3, $4, $5)
               RETURNING id""",
            client, kind, conversation_id, data, now))

    async def list_records(self, client: str, kind: str, limit: int, offset: int) -> list[dict[str, Any]]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT * FROM client_records WHERE client = $1 AND kind = $2 ORDER BY id LIMIT $3 OFFSET $4",
            client, kind, limit, offset))
        # created_at as the SQLite store gives it: ISO 8601 text.
        return [{"id": row["id"], "conversation_id": row["conversation_id"],
                 "created_at": row["created_at"].isoformat(timespec="microseconds"), "ref": row["ref"],
                 "data": row["data"]} for row in rows]

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        rows = await self._read(lambda conn: conn.fetch(
            """SELECT ref, data FROM client_records WHERE client = $1 AND kind = $2 AND conversation_id = $3
               AND created_at >= $4 ORDER BY id""", client, kind, conversation_id, since))
        return [{"ref": row["ref"], "data": row["data"]} for row in rows]

    async def claim_effects(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Effect]:
        rows = await self._write(lambda conn: conn.fetch(
            """UPDATE effects SET lease_owner = $1, lease_until = $2
               WHERE id IN (SELECT id FROM effects WHERE due_at IS NOT NULL AND due_at <= $3
                              AND (lease_until IS NULL OR lease_until <= $3)
                            ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
               RETURNING *""", owner, now + timedelta(seconds=lease_seconds), now, limit))
        return [_effect(row) for row in rows]

    async def settle_effect(self, effect: Effect, owner: str, now: datetime, *, error: str | None = None,
                            retry_at: datetime | None = None) -> bool:
        status = "done" if error is None else ("pending" if retry_at is not None else "failed")
        result = await self._write(lambda conn: conn.execute(
            """UPDATE effects SET status = $1, attempts = attempts + 1, last_error = $2, due_at = $3, done_at = $4,
                   lease_owner = NULL, lease_until = NULL
               WHERE id = $5 AND lease_owner = $6""", status, error, retry_at, now if status == "done" else None,
            effect.id, owner))
        return result.endswith(" 1")

    async def list_effects(self, client: str, conversation_id: int) -> list[Effect]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT * FROM effects WHERE client = $1 AND conversation_id = $2 ORDER BY id", client, conversation_id))
        return [_effect(row) for row in rows]

    # ---------------------------------------------------------------- reads for the REST API

    async def list_conversations(self, client: str, limit: int, offset: int) -> list[Conversation]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT * FROM conversations WHERE client = $1 ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3",
            client, limit, offset))
        return [_conversation(row) for row in rows]

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None:
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT * FROM conversations WHERE client = $1 AND id = $2", client, conversation_id))
        return _conversation(row) if row else None

    async def find_conversation(self, client: str, phone_number_id: str, user_key: str) -> Conversation | None:
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT * FROM conversations WHERE client = $1 AND phone_number_id = $2 AND user_key = $3",
            client, phone_number_id, user_key))
        return _conversation(row) if row else None

    async def list_messages(self, conversation_id: int, limit: int, offset: int) -> list[StoredMessage]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT * FROM messages WHERE conversation_id = $1 ORDER BY {TIMELINE_ORDER.format(dir='ASC')} LIMIT $2 OFFSET $3",
            conversation_id, limit, offset))
        return [_message(row) for row in rows]

    async def get_message(self, message_id: int) -> StoredMessage | None:
        row = await self._read(lambda conn: conn.fetchrow("SELECT * FROM messages WHERE id = $1", message_id))
        return _message(row) if row else None


async def _insert(conn: asyncpg.Connection, conversation_id: int, item: NewMessage, batch_id: str | None,
                  now: datetime | None) -> StoredMessage:
    row = await conn.fetchrow(
        """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, status, error, batch_id,
                                 category, processed_at, prompt_tokens, completion_tokens, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $12)
           RETURNING *""",
        conversation_id, item.wamid, item.direction, item.role, item.type, _text(item.text), item.payload, item.status,
        item.error, batch_id, item.category, now, item.prompt_tokens, item.completion_tokens)
    return _message(row)


async def _apply_statuses(conn: asyncpg.Connection, client: str, wamid: str) -> None:
    """Move the message forward by every status recorded for it (some beat the send's own response to us)."""
    current = await conn.fetchrow("SELECT status, error FROM messages WHERE wamid = $1 FOR NO KEY UPDATE", wamid)
    reports = [(row["status"], row["payload"]) for row in await conn.fetch(
        "SELECT status, payload FROM message_statuses WHERE client = $1 AND wamid = $2", client, wamid)]
    status, error, changed = applied_statuses(current["status"], current["error"], reports)
    if changed:
        await conn.execute("UPDATE messages SET status = $1, error = $2 WHERE wamid = $3", status, error, wamid)


async def _apply_intents(conn: asyncpg.Connection, conversation: Conversation, batch_id: str,
                         intents: Sequence[Intent], now: datetime) -> None:
    """What the turn decided, in its own transaction: records and a hand-over now, emails into the outbox."""
    for intent in intents:
        if intent.kind == "record":
            await conn.execute(
                "INSERT INTO client_records (client, kind, conversation_id, data, created_at, ref) "
                "VALUES ($1, $2, $3, $4, $5, $6)", conversation.client, intent.data["kind"], conversation.id,
                intent.data["data"], now, intent.data.get("ref"))
        elif intent.kind == "handover":
            # As an operator's takeover: what was waiting is theirs now; the bot's unsent reply still goes out.
            await conn.execute("UPDATE messages SET processed_at = $1 WHERE conversation_id = $2 AND direction = 'in' "
                               "AND processed_at IS NULL", now, conversation.id)
            await conn.execute("""UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, $1),
                                      last_operator_at = $1, pending_since = NULL WHERE id = $2""",
                               now, conversation.id)
        else:
            await conn.execute(
                """INSERT INTO effects (client, conversation_id, batch_id, key, kind, data, due_at, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (batch_id, key) DO NOTHING""",
                conversation.client, conversation.id, batch_id, intent.key, intent.kind, intent.data, now)


def _effect(row: asyncpg.Record) -> Effect:
    return Effect(id=row["id"], client=row["client"], conversation_id=row["conversation_id"], batch_id=row["batch_id"],
                  key=row["key"], kind=row["kind"], data=row["data"], status=row["status"], attempts=row["attempts"],
                  last_error=row["last_error"], due_at=row["due_at"], created_at=row["created_at"],
                  done_at=row["done_at"])


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        id=row["id"], client=row["client"], phone_number_id=row["phone_number_id"], user_key=row["user_key"],
        wa_id=row["wa_id"], user_id=row["user_id"], contact_name=row["contact_name"], mode=row["mode"],
        due_at=row["due_at"], last_inbound_at=row["last_inbound_at"],
        prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        created_at=row["created_at"], updated_at=row["updated_at"],
        human_since=row["human_since"], last_operator_at=row["last_operator_at"],
        needs_attention=row["needs_attention"], attention_reason=row["attention_reason"],
    )


def _message(row: asyncpg.Record) -> StoredMessage:
    return StoredMessage(
        id=row["id"], conversation_id=row["conversation_id"], wamid=row["wamid"], direction=row["direction"],
        role=row["role"], type=row["type"], text=row["text"], payload=row["payload"], status=row["status"],
        error=row["error"], wa_timestamp=row["wa_timestamp"], batch_id=row["batch_id"],
        processed_at=row["processed_at"], prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"], created_at=row["created_at"], category=row["category"],
        media_path=row["media_path"],
    )
