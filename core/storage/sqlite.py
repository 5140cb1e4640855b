"""The embedded default Store: one SQLite file, every operation a transaction on one dedicated thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

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

SCHEMA = (Path(__file__).parent / "sqlite_schema.sql").read_text()

# Handled messages in the order they happened: by the turn that handled them, the user's side of a turn first.
TIMELINE_ORDER = (
    "COALESCE(processed_at, '9999') {dir}, CASE direction WHEN 'in' THEN 0 ELSE 1 END {dir}, "
    "COALESCE(wa_timestamp, created_at) {dir}, id {dir}"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="microseconds") if value is not None else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _json(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value is not None else None


class SQLiteStore:
    """Store on a SQLite file in WAL mode; safe for several processes sharing the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._db is not None, "store is not open"
            try:
                return fn(self._db)
            except sqlite3.OperationalError as error:
                raise StoreUnavailable(f"SQLite: {error}") from error

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction(db: sqlite3.Connection) -> T:
            # IMMEDIATE takes the write lock up front, so concurrent processes queue instead of deadlocking.
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(transaction)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL: a commit survives the process dying (what a 200 to Meta promises here);
            # only a power loss may drop the last commits, and SQLite is the laptop default, not production.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            _add_missing_columns(db)
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(lambda db: db.close())
            self._db = None
        self._executor.shutdown(wait=True)

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce, now: datetime) -> InboundResult:
        def write(db: sqlite3.Connection) -> InboundResult:
            stamp = _iso(now)
            conversation = db.execute(
                """INSERT INTO conversations (client, phone_number_id, user_key, wa_id, user_id, contact_name, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (client, phone_number_id, user_key) DO UPDATE SET
                       wa_id = COALESCE(excluded.wa_id, wa_id),
                       user_id = COALESCE(excluded.user_id, user_id),
                       contact_name = COALESCE(excluded.contact_name, contact_name)
                   RETURNING id, mode, due_at, pending_since""",
                (client, message.phone_number_id, message.user_key, message.wa_id, message.user_id,
                 message.contact_name, stamp, stamp),
            ).fetchone()
            answer = message.wants_reply and conversation["mode"] == "bot"
            inserted = db.execute(
                """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, wa_timestamp,
                                         processed_at, created_at)
                   VALUES (?, ?, 'in', 'user', ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (wamid) DO NOTHING""",
                (conversation["id"], message.wamid, message.type, message.text, _json(message.payload),
                 _iso(message.wa_timestamp), None if answer else stamp, stamp),
            ).rowcount
            if not inserted:
                return InboundResult(conversation["id"], False, _time(conversation["due_at"]))
            due_at = _time(conversation["due_at"])
            pending_since = _time(conversation["pending_since"])
            if answer:
                due_at, pending_since = settled_at(now, pending_since, debounce)
            db.execute(
                """UPDATE conversations SET due_at = ?, pending_since = ?, updated_at = ?,
                       last_inbound_at = MAX(COALESCE(last_inbound_at, ''), ?)
                   WHERE id = ?""",
                (_iso(due_at), _iso(pending_since), stamp, _iso(message.wa_timestamp or now), conversation["id"]),
            )
            return InboundResult(conversation["id"], True, due_at)

        return await self._write(write)

    async def record_status(self, client: str, update: StatusUpdate, now: datetime) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            db.execute(
                """INSERT INTO message_statuses (client, wamid, status, timestamp, payload, recorded_at)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client, wamid, status) DO NOTHING""",
                (client, update.wamid, update.status, _iso(update.timestamp), _json(update.payload), _iso(now)),
            )
            row = db.execute(
                """SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.wamid = ? AND c.client = ?""",
                (update.wamid, client),
            ).fetchone()
            if row is None:
                return False
            _apply_statuses(db, client, update.wamid)
            return True

        return await self._write(write)

    async def next_due_at(self) -> datetime | None:
        def read(db: sqlite3.Connection) -> datetime | None:
            # A leased conversation becomes claimable only when its lease ends.
            row = db.execute(
                """SELECT MIN(MAX(due_at, COALESCE(lease_until, due_at))) FROM conversations
                   WHERE due_at IS NOT NULL"""
            ).fetchone()
            return _time(row[0])

        return await self._run(read)

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int,
                        exclude_clients: Collection[str] = (), per_client: int | None = None) -> list[Claim]:
        lease_until = now + timedelta(seconds=lease_seconds)
        excluded = sorted(exclude_clients)
        skip = f"AND client NOT IN ({','.join('?' * len(excluded))})" if excluded else ""

        def write(db: sqlite3.Connection) -> list[Claim]:
            rows = db.execute(
                f"""UPDATE conversations SET lease_owner = ?, lease_until = ?
                    WHERE id IN (SELECT id FROM (
                                     SELECT id, due_at, ROW_NUMBER() OVER (PARTITION BY client ORDER BY due_at) AS rank
                                     FROM conversations
                                     WHERE due_at IS NOT NULL AND due_at <= ?
                                       AND (lease_until IS NULL OR lease_until <= ?) {skip})
                                 WHERE rank <= ? ORDER BY due_at LIMIT ?)
                    RETURNING *""",
                (owner, _iso(lease_until), _iso(now), _iso(now), *excluded, per_client or limit, limit),
            ).fetchall()
            return [Claim(_conversation(row), owner, lease_until) for row in rows]

        return await self._write(write)

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        lease_until = now + timedelta(seconds=lease_seconds)

        def write(db: sqlite3.Connection) -> bool:
            return bool(db.execute(
                "UPDATE conversations SET lease_until = ? WHERE id = ? AND lease_owner = ? AND lease_until > ?",
                (_iso(lease_until), claim.conversation.id, claim.owner, _iso(now)),
            ).rowcount)

        renewed = await self._write(write)
        return Claim(claim.conversation, claim.owner, lease_until) if renewed else None

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                """UPDATE conversations SET lease_owner = NULL, lease_until = NULL, due_at = COALESCE(?, due_at)
                   WHERE id = ? AND lease_owner = ?""",
                (_iso(retry_at), claim.conversation.id, claim.owner),
            )

        await self._write(write)

    async def pending_batch(self, conversation_id: int) -> list[StoredMessage]:
        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                """SELECT * FROM messages WHERE conversation_id = ? AND direction = 'in' AND processed_at IS NULL
                   ORDER BY COALESCE(wa_timestamp, created_at), id""",
                (conversation_id,),
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._run(read)

    async def history(self, conversation_id: int, limit: int) -> list[StoredMessage]:
        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                f"""SELECT * FROM messages WHERE conversation_id = ? AND processed_at IS NOT NULL
                    ORDER BY {TIMELINE_ORDER.format(dir='DESC')} LIMIT ?""",
                (conversation_id, limit),
            ).fetchall()
            return [_message(row) for row in reversed(rows)]

        return await self._run(read)

    async def update_text(self, message_id: int, text: str) -> None:
        await self._write(lambda db: db.execute("UPDATE messages SET text = ? WHERE id = ?", (text, message_id)))

    async def set_media_path(self, message_id: int, path: str) -> None:
        await self._write(lambda db: db.execute("UPDATE messages SET media_path = ? WHERE id = ?", (path, message_id)))

    async def save_turn(self, claim: Claim, batch: list[StoredMessage], batch_id: str, produced: list[NewMessage],
                        now: datetime, intents: Sequence[Intent] = ()) -> list[StoredMessage]:
        def write(db: sqlite3.Connection) -> list[StoredMessage]:
            stamp = _iso(now)
            conversation_id = claim.conversation.id
            row = db.execute("SELECT mode, lease_owner FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row["lease_owner"] != claim.owner:
                raise LeaseLost(f"conversation {conversation_id} is no longer held by {claim.owner}")
            mode = row["mode"]
            if mode != "bot":
                # An operator took over while the model was thinking: the reply is not sent, the steps are kept.
                produced_now = [item for item in produced if item.direction != "out"]
            else:
                produced_now = produced
            db.executemany(
                "UPDATE messages SET processed_at = ?, batch_id = ? WHERE id = ? AND processed_at IS NULL",
                [(stamp, batch_id, message.id) for message in batch],
            )
            outbound_ids = []
            for item in produced_now:
                message_id = _insert(db, conversation_id, item, batch_id, stamp)
                if item.direction == "out":
                    outbound_ids.append(message_id)
            db.execute(
                """UPDATE conversations SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,
                       turn_failures = 0, updated_at = ? WHERE id = ?""",
                (sum(item.prompt_tokens for item in produced), sum(item.completion_tokens for item in produced),
                 stamp, conversation_id),
            )
            _apply_intents(db, claim.conversation, batch_id, intents, stamp)
            return _messages_by_id(db, outbound_ids)

        return await self._write(write)

    async def unsent_replies(self, conversation_id: int) -> list[StoredMessage]:
        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND direction = 'out' AND role = 'assistant' "
                "AND status = 'pending' ORDER BY id",
                (conversation_id,),
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._run(read)

    async def mark_sent(self, message_id: int, wamid: str | None, status: str, error: dict[str, Any] | None) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE messages SET wamid = ?, status = ?, error = ? WHERE id = ?",
                       (wamid, status, _json(error), message_id))
            if wamid:
                client = db.execute(
                    "SELECT c.client FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?",
                    (message_id,),
                ).fetchone()["client"]
                _apply_statuses(db, client, wamid)

        await self._write(write)

    async def finish_turn(self, claim: Claim, now: datetime) -> None:
        def write(db: sqlite3.Connection) -> None:
            conversation_id = claim.conversation.id
            pending = db.execute(
                "SELECT MIN(created_at) FROM messages WHERE conversation_id = ? AND direction = 'in' AND processed_at IS NULL",
                (conversation_id,),
            ).fetchone()[0]
            unsent = db.execute(
                "SELECT 1 FROM messages WHERE conversation_id = ? AND direction = 'out' AND role = 'assistant' "
                "AND status = 'pending' LIMIT 1",
                (conversation_id,),
            ).fetchone()
            keep_due = pending is not None or unsent is not None
            db.execute(
                """UPDATE conversations SET pending_since = ?, due_at = CASE WHEN ? THEN COALESCE(due_at, ?) END,
                       lease_owner = NULL, lease_until = NULL, turn_failures = 0,
                       updated_at = ? WHERE id = ? AND lease_owner = ?""",
                (pending, keep_due, _iso(now), _iso(now), conversation_id, claim.owner),
            )

        await self._write(write)

    async def count_failure(self, claim: Claim, prompt_tokens: int, completion_tokens: int) -> int:
        def write(db: sqlite3.Connection) -> int:
            row = db.execute(
                """UPDATE conversations SET turn_failures = turn_failures + 1, prompt_tokens = prompt_tokens + ?,
                       completion_tokens = completion_tokens + ? WHERE id = ? AND lease_owner = ? RETURNING turn_failures""",
                (prompt_tokens, completion_tokens, claim.conversation.id, claim.owner)).fetchone()
            if row is None:
                raise LeaseLost(f"conversation {claim.conversation.id} is no longer held by {claim.owner}")
            return int(row[0])

        return await self._write(write)

    async def flag(self, conversation_id: int, reason: str) -> None:
        await self._write(lambda db: db.execute(
            "UPDATE conversations SET needs_attention = 1, attention_reason = ? WHERE id = ?", (reason, conversation_id)))

    async def set_mode(self, client: str, conversation_id: int, mode: Mode, now: datetime) -> Conversation | None:
        def write(db: sqlite3.Connection) -> Conversation | None:
            stamp = _iso(now)
            if mode == "human":
                # The operator now answers what was waiting, so the bot must not.
                db.execute(
                    "UPDATE messages SET processed_at = ? WHERE conversation_id = ? AND direction = 'in' AND processed_at IS NULL "
                    "AND conversation_id IN (SELECT id FROM conversations WHERE client = ?)",
                    (stamp, conversation_id, client),
                )
                db.execute(
                    """UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, ?), last_operator_at = ?,
                           due_at = NULL, pending_since = NULL, updated_at = ? WHERE id = ? AND client = ?""",
                    (stamp, stamp, stamp, conversation_id, client),
                )
            else:
                db.execute(
                    "UPDATE conversations SET mode = 'bot', human_since = NULL, updated_at = ? WHERE id = ? AND client = ?",
                    (stamp, conversation_id, client),
                )
            row = db.execute("SELECT * FROM conversations WHERE id = ? AND client = ?", (conversation_id, client)).fetchone()
            return _conversation(row) if row else None

        return await self._write(write)

    async def add_operator_message(self, conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
        def write(db: sqlite3.Connection) -> StoredMessage:
            stamp = _iso(now)
            message_id = _insert(db, conversation_id, message, None, stamp)
            db.execute("UPDATE conversations SET last_operator_at = ?, updated_at = ? WHERE id = ?",
                       (stamp, stamp, conversation_id))
            return _messages_by_id(db, [message_id])[0]

        return await self._write(write)

    async def release_idle_takeovers(self, client: str, idle_since: datetime) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute(
                """UPDATE conversations SET mode = 'bot', human_since = NULL
                   WHERE client = ? AND mode = 'human' AND COALESCE(last_operator_at, human_since) < ?""",
                (client, _iso(idle_since)),
            ).rowcount

        return await self._write(write)

    async def get_document(self, client: str, key: str) -> Any | None:
        def read(db: sqlite3.Connection) -> Any | None:
            row = db.execute("SELECT data FROM client_documents WHERE client = ? AND key = ?", (client, key)).fetchone()
            return json.loads(row["data"]) if row else None

        return await self._run(read)

    async def put_document(self, client: str, key: str, data: Any, now: datetime) -> None:
        await self._write(lambda db: db.execute(
            """INSERT INTO client_documents (client, key, data, updated_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (client, key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at""",
            (client, key, _json(data), _iso(now))))

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None,
                         now: datetime) -> int:
        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO client_records (client, kind, conversation_id, data, created_at) VALUES (?, ?, ?, ?, ?)",
                (client, kind, conversation_id, _json(data), _iso(now)))
            return int(cursor.lastrowid or 0)

        return await self._write(write)

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                """SELECT ref, data FROM client_records WHERE client = ? AND kind = ? AND conversation_id = ?
                   AND created_at >= ? ORDER BY id""", (client, kind, conversation_id, _iso(since))).fetchall()
            return [{"ref": row["ref"], "data": json.loads(row["data"])} for row in rows]

        return await self._run(read)

    async def claim_effects(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Effect]:
        lease_until = _iso(now + timedelta(seconds=lease_seconds))

        def write(db: sqlite3.Connection) -> list[Effect]:
            rows = db.execute(
                """UPDATE effects SET lease_owner = ?, lease_until = ?
                   WHERE id IN (SELECT id FROM effects WHERE due_at IS NOT NULL AND due_at <= ?
                                  AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT ?)
                   RETURNING *""",
                (owner, lease_until, _iso(now), _iso(now), limit)).fetchall()
            return [_effect(row) for row in rows]

        return await self._write(write)

    async def settle_effect(self, effect: Effect, owner: str, now: datetime, *, error: str | None = None,
                            retry_at: datetime | None = None) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            status = "done" if error is None else ("pending" if retry_at is not None else "failed")
            return bool(db.execute(
                """UPDATE effects SET status = ?, attempts = attempts + 1, last_error = ?, due_at = ?, done_at = ?,
                       lease_owner = NULL, lease_until = NULL
                   WHERE id = ? AND lease_owner = ?""",
                (status, error, _iso(retry_at), _iso(now) if status == "done" else None, effect.id, owner)).rowcount)

        return await self._write(write)

    async def list_effects(self, client: str, conversation_id: int) -> list[Effect]:
        def read(db: sqlite3.Connection) -> list[Effect]:
            rows = db.execute("SELECT * FROM effects WHERE client = ? AND conversation_id = ? ORDER BY id",
                              (client, conversation_id)).fetchall()
            return [_effect(row) for row in rows]

        return await self._run(read)

    async def list_records(self, client: str, kind: str, limit: int, offset: int) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT * FROM client_records WHERE client = ? AND kind = ? ORDER BY id LIMIT ? OFFSET ?",
                (client, kind, limit, offset)).fetchall()
            return [{"id": row["id"], "conversation_id": row["conversation_id"], "created_at": row["created_at"],
                     "ref": row["ref"], "data": json.loads(row["data"])} for row in rows]

        return await self._run(read)

    async def list_conversations(self, client: str, limit: int, offset: int) -> list[Conversation]:
        def read(db: sqlite3.Connection) -> list[Conversation]:
            rows = db.execute(
                "SELECT * FROM conversations WHERE client = ? ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
                (client, limit, offset),
            ).fetchall()
            return [_conversation(row) for row in rows]

        return await self._run(read)

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None:
        def read(db: sqlite3.Connection) -> Conversation | None:
            row = db.execute("SELECT * FROM conversations WHERE client = ? AND id = ?", (client, conversation_id)).fetchone()
            return _conversation(row) if row else None

        return await self._run(read)

    async def find_conversation(self, client: str, phone_number_id: str, user_key: str) -> Conversation | None:
        def read(db: sqlite3.Connection) -> Conversation | None:
            row = db.execute("SELECT * FROM conversations WHERE client = ? AND phone_number_id = ? AND user_key = ?",
                             (client, phone_number_id, user_key)).fetchone()
            return _conversation(row) if row else None

        return await self._run(read)

    async def list_messages(self, conversation_id: int, limit: int, offset: int) -> list[StoredMessage]:
        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                f"SELECT * FROM messages WHERE conversation_id = ? ORDER BY {TIMELINE_ORDER.format(dir='ASC')} LIMIT ? OFFSET ?",
                (conversation_id, limit, offset),
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._run(read)

    async def get_message(self, message_id: int) -> StoredMessage | None:
        def read(db: sqlite3.Connection) -> StoredMessage | None:
            found = _messages_by_id(db, [message_id])
            return found[0] if found else None

        return await self._run(read)


# Columns added after a file may have been created: (table, column, declaration).
_LATER_COLUMNS = [("messages", "media_path", "TEXT"), ("client_records", "ref", "TEXT"),
                  ("conversations", "turn_failures", "INTEGER NOT NULL DEFAULT 0")]


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring an older laptop database up to the schema (CREATE TABLE IF NOT EXISTS leaves old tables as they are)."""
    for table, column, declaration in _LATER_COLUMNS:
        if column not in {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _insert(db: sqlite3.Connection, conversation_id: int, item: NewMessage, batch_id: str | None, stamp: str | None) -> int:
    cursor = db.execute(
        """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, status, error, batch_id,
                                 category, processed_at, prompt_tokens, completion_tokens, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (conversation_id, item.wamid, item.direction, item.role, item.type, item.text, _json(item.payload), item.status,
         _json(item.error), batch_id, item.category, stamp, item.prompt_tokens, item.completion_tokens, stamp),
    )
    return int(cursor.lastrowid or 0)


def _messages_by_id(db: sqlite3.Connection, ids: list[int]) -> list[StoredMessage]:
    if not ids:
        return []
    rows = db.execute(f"SELECT * FROM messages WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids).fetchall()
    return [_message(row) for row in rows]


def _apply_statuses(db: sqlite3.Connection, client: str, wamid: str) -> None:
    """Move the message forward by every status recorded for it (some beat the send's own response to us)."""
    current = db.execute("SELECT status, error FROM messages WHERE wamid = ?", (wamid,)).fetchone()
    reports = [(row["status"], json.loads(row["payload"])) for row in db.execute(
        "SELECT status, payload FROM message_statuses WHERE client = ? AND wamid = ?", (client, wamid))]
    status, error, changed = applied_statuses(current["status"], json.loads(current["error"]) if current["error"]
                                              else None, reports)
    if changed:
        db.execute("UPDATE messages SET status = ?, error = ? WHERE wamid = ?", (status, _json(error), wamid))


def _apply_intents(db: sqlite3.Connection, conversation: Conversation, batch_id: str, intents: Sequence[Intent],
                   stamp: str) -> None:
    """What the turn decided, in its own transaction: records and a hand-over now, emails into the outbox."""
    for intent in intents:
        if intent.kind == "record":
            db.execute("INSERT INTO client_records (client, kind, conversation_id, data, created_at, ref) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (conversation.client, intent.data["kind"], conversation.id,
                                                     _json(intent.data["data"]), stamp, intent.data.get("ref")))
        elif intent.kind == "handover":
            # As an operator's takeover: what was waiting is theirs now; the bot's unsent reply still goes out.
            db.execute("UPDATE messages SET processed_at = ? WHERE conversation_id = ? AND direction = 'in' "
                       "AND processed_at IS NULL", (stamp, conversation.id))
            db.execute("""UPDATE conversations SET mode = 'human', human_since = COALESCE(human_since, ?),
                              last_operator_at = ?, pending_since = NULL WHERE id = ?""",
                       (stamp, stamp, conversation.id))
        else:
            db.execute("""INSERT INTO effects (client, conversation_id, batch_id, key, kind, data, due_at, created_at)
                          VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id, key) DO NOTHING""",
                       (conversation.client, conversation.id, batch_id, intent.key, intent.kind, _json(intent.data),
                        stamp, stamp))


def _effect(row: sqlite3.Row) -> Effect:
    return Effect(id=row["id"], client=row["client"], conversation_id=row["conversation_id"], batch_id=row["batch_id"],
                  key=row["key"], kind=row["kind"], data=json.loads(row["data"]), status=row["status"],
                  attempts=row["attempts"], last_error=row["last_error"], due_at=_time(row["due_at"]),
                  created_at=_time(row["created_at"]), done_at=_time(row["done_at"]))  # type: ignore[arg-type]


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"], client=row["client"], phone_number_id=row["phone_number_id"], user_key=row["user_key"],
        wa_id=row["wa_id"], user_id=row["user_id"], contact_name=row["contact_name"], mode=row["mode"],
        due_at=_time(row["due_at"]), last_inbound_at=_time(row["last_inbound_at"]),
        prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        created_at=_time(row["created_at"]), updated_at=_time(row["updated_at"]),  # type: ignore[arg-type]
        human_since=_time(row["human_since"]), last_operator_at=_time(row["last_operator_at"]),
        needs_attention=bool(row["needs_attention"]), attention_reason=row["attention_reason"],
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"], conversation_id=row["conversation_id"], wamid=row["wamid"], direction=row["direction"],
        role=row["role"], type=row["type"], text=row["text"],
        payload=json.loads(row["payload"]) if row["payload"] else None, status=row["status"],
        error=json.loads(row["error"]) if row["error"] else None, wa_timestamp=_time(row["wa_timestamp"]),
        batch_id=row["batch_id"], processed_at=_time(row["processed_at"]),
        prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        created_at=_time(row["created_at"]), category=row["category"],  # type: ignore[arg-type]
        media_path=row["media_path"],
    )
