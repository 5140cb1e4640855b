"""The production database: PostgreSQL (Supabase) through an asyncpg pool; any number of processes share it.

Same tables, columns and meanings as the SQLite file (supabase/migrations/); the store's SQL is core/storage/sql_store.py.
Each write is a short transaction on a pooled connection, retried on serialization failures and deadlocks.

Connection options read from DATABASE_URL's query string (removed before asyncpg sees it):
  statement_cache_size=N  asyncpg's prepared-statement cache per connection; 0 for a pooler in transaction mode.
                          Default: 0 when the port is 6543 (Supabase's transaction pooler) or pgbouncer=true is
                          given, else asyncpg's default (100).
  pool_size=N             connections per process (default 10).
See docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from core.storage.base import StoreUnavailable
from core.storage.sql import Body, Json, Row, Tx, json_text, json_value
from core.storage.sql_store import SQLStore

T = TypeVar("T")

TABLES = ("conversations", "messages", "message_statuses", "client_documents", "client_records", "effects",
          "client_switches", "usage_daily", "scheduled_jobs", "console_users", "console_login_failures",
          "templates", "contacts", "contact_tags", "broadcasts", "broadcast_recipients", "send_slots",
          "playground_prompts", "console_reads", "console_preferences")
SUPABASE_TRANSACTION_POOLER_PORT = 6543
DEFAULT_POOL_SIZE = 10
# Writes committed together at most (acknowledgements under load): one transaction, three statements each.
GROUP_MAX = 64
# pg_advisory_xact_lock(namespace, hashtext(key)): transactions that name the same key take turns.
_SERIALIZE_LOCK = 0x5743

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
    return _NUL_ESCAPE.sub(r"\1\\ufffd", json_text(value))


def _encode(args: Sequence[Any]) -> tuple[Any, ...]:
    # JSON goes through the connection's codec; Postgres refuses NUL in text columns too.
    return tuple(value.value if isinstance(value, Json)
                 else value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value
                 else value for value in args)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=json_value, schema="pg_catalog")


def _count(status: str) -> int:
    """Rows touched, from a command tag such as 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


class PostgresDialect:
    """asyncpg decodes timestamps and JSON itself; rows are locked one by one."""

    row_lock = "FOR NO KEY UPDATE"
    claim_lock = "FOR UPDATE SKIP LOCKED"

    def time(self, value: Any) -> Any:
        return value

    def json(self, value: Any) -> Any:
        return value


DIALECT = PostgresDialect()


class _Tx:
    """Statements on one pooled connection inside its transaction."""

    dialect = DIALECT

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._conn.fetch(sql, *_encode(args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._conn.fetchrow(sql, *_encode(args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *_encode(args))

    async def execute(self, sql: str, *args: Any) -> int:
        return _count(await self._conn.execute(sql, *_encode(args)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [_encode(row) for row in rows])

    async def serialize_on(self, key: str) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _SERIALIZE_LOCK, key)


async def _each(tx: Tx, bodies: list[Body[Any]]) -> list[Any]:
    return [await body(tx) for body in bodies]


async def _outcome(awaitable: Awaitable[T]) -> tuple[bool, T | Exception]:
    try:
        return True, await awaitable
    except Exception as error:
        return False, error


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, migrated beforehand (`python -m core migrate`)."""

    dialect = DIALECT

    def __init__(self, dsn: str, *, min_size: int = 1, command_timeout: float = 30.0,
                 acquire_timeout: float = 15.0) -> None:
        self._dsn, self._options = connection_options(dsn)
        self._min_size = min(min_size, self._options["max_size"])
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._queue: list[tuple[str, Body[Any], asyncio.Future[Any]]] = []
        self._committers: set[asyncio.Task[None]] = set()
        # Groups in flight at once: all but two of the pool's connections, so turns and reads still get one.
        self._max_committers = max(1, self._options["max_size"] - 2)

    async def _run(self, body: Body[T], *, write: bool) -> T:
        assert self._pool is not None, "store is not open"
        for attempt in range(_RETRIES):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    if not write:
                        return await body(_Tx(conn))
                    async with conn.transaction():
                        return await body(_Tx(conn))
            except asyncpg.TransactionRollbackError as error:
                if attempt == _RETRIES - 1:
                    raise StoreUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from error
            except _UNAVAILABLE as error:
                raise StoreUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from error
        raise AssertionError("unreachable")

    async def read(self, body: Body[T]) -> T:
        return await self._run(body, write=False)

    async def write(self, body: Body[T], *, order: str | None = None) -> T:
        if order is None:
            return await self._run(body, write=True)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((order, body, future))
        if len(self._committers) < self._max_committers:
            task = asyncio.create_task(self._commit_queued(), name="postgres-group-commit")
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        return await future

    async def _commit_queued(self) -> None:
        """Commit what is queued, a group at a time, until nothing is; other committers take other groups."""
        while self._queue:
            group = sorted((item for item in self._queue[:GROUP_MAX] if not item[2].cancelled()), key=lambda item: item[0])
            del self._queue[:GROUP_MAX]
            outcomes: list[tuple[bool, Any]] = [(False, StoreUnavailable("PostgreSQL: stopped while committing"))] * len(group)
            try:
                outcomes = await self._commit_group([body for _, body, _ in group])
            finally:
                for (_, _, future), (done, value) in zip(group, outcomes, strict=True):
                    if future.cancelled():
                        continue
                    if done:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    async def _commit_group(self, bodies: list[Body[Any]]) -> list[tuple[bool, Any]]:
        if len(bodies) > 1:
            try:
                return [(True, value) for value in await self._run(lambda tx: _each(tx, bodies), write=True)]
            except Exception:
                pass  # one write failed (or the database did): each alone, so that only a failing one fails
        return [await _outcome(self._run(body, write=True)) for body in bodies]

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, init=_init_connection, command_timeout=self._command_timeout,
                timeout=self._acquire_timeout, **self._options)
        except (*_UNAVAILABLE, asyncpg.PostgresError) as error:
            raise StoreUnavailable(f"PostgreSQL: cannot connect: {type(error).__name__}: {error}") from error
        try:
            missing = await self.read(lambda tx: tx.fetchval(
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
        if self._committers:
            await asyncio.gather(*self._committers, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (*_UNAVAILABLE, asyncpg.PostgresError):
                pool.terminate()


class PostgresStore(SQLStore):
    """The Store on PostgreSQL; safe for many processes and hosts sharing the database."""

    def __init__(self, dsn: str, *, min_size: int = 1, command_timeout: float = 30.0,
                 acquire_timeout: float = 15.0) -> None:
        super().__init__(PostgresDatabase(dsn, min_size=min_size, command_timeout=command_timeout,
                                          acquire_timeout=acquire_timeout))
