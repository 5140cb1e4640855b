"""The embedded default database: one SQLite file, writes group-committed.

Concurrent writes (a burst of webhook acknowledgements, turns finishing) queue and run in ONE transaction, so the
statements' fixed costs and the commit are paid once per group instead of once per write: acknowledgements on the
event loop's thread, everything else on a thread of the database's own (see SQLiteDatabase). If a write of a
group fails, the group is rolled back and each write runs alone, so only a failing write fails. Every caller
returns only after the commit that holds its write.
"""

from __future__ import annotations

import asyncio
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from core.storage.base import StoreUnavailable
from core.storage.sql import Body, Json, Row, iso, json_text, json_value
from core.storage.sql_store import SQLStore
from core.storage.sqlite_checkpoint import DEFAULT_WAL_BYTES, Checkpointer

T = TypeVar("T")

SCHEMA = (Path(__file__).parent / "sqlite_schema.sql").read_text()

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    """`$3` (Postgres) is `?3` in SQLite: numbered, so a number may repeat and come in any order."""
    return _PLACEHOLDER.sub(r"?\1", sql)


# What sqlite3 binds as it is: most arguments, so the check is one set lookup (this runs for every statement).
_AS_IS = frozenset({str, int, float, bool, bytes, type(None)})


def _encode(args: Sequence[Any]) -> list[Any]:
    return [value if type(value) in _AS_IS else _convert(value) for value in args]


def _convert(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value, value.utcoffset())
    if isinstance(value, Json):
        return None if value.value is None else json_text(value.value)
    return value


@lru_cache(maxsize=4096)
def _iso(value: datetime, offset: timedelta | None) -> str | None:
    # A turn's or an acknowledgement's `now` is written several times: formatted once. The offset is part of the
    # key because equal instants in other zones are equal datetimes, yet are written differently.
    return iso(value)


class SQLiteDialect:
    """Timestamps are ISO 8601 text, JSON is text; one writer at a time, so nothing to lock per row."""

    row_lock = ""
    claim_lock = ""

    def time(self, value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    def json(self, value: Any) -> Any:
        return json_value(value) if value is not None else None


DIALECT = SQLiteDialect()


class _Tx:
    """Statements on the connection, run synchronously: its coroutines complete without ever suspending."""

    dialect = DIALECT

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._db.execute(_translate(sql), _encode(args)).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        # fetchall: a statement left unfinished (an UPDATE ... RETURNING) would keep the transaction from committing.
        rows = self._db.execute(_translate(sql), _encode(args)).fetchall()
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return row[0] if row is not None else None

    async def execute(self, sql: str, *args: Any) -> int:
        return self._db.execute(_translate(sql), _encode(args)).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(_translate(sql), [_encode(row) for row in rows])

    async def serialize_on(self, key: str) -> None:
        """Every write transaction holds the file's write lock already."""


def _complete(awaitable: Awaitable[T]) -> T:
    """Run a transaction body to its end on this thread: it may only await the statements of `_Tx`."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()
    raise RuntimeError("a SQLite transaction body awaited something other than its own statements")


def _unavailable(error: sqlite3.OperationalError) -> StoreUnavailable:
    unavailable = StoreUnavailable(f"SQLite: {error}")
    unavailable.__cause__ = error
    return unavailable


class _Job(NamedTuple):
    """Work for the database thread: a write (grouped with its neighbours), a read, or a call (connect, disconnect)."""

    kind: str  # WRITE, READ or CALL
    work: Any  # a transaction body, or a plain callable for CALL
    future: asyncio.Future[Any]


WRITE, READ, CALL = "write", "read", "call"


# After a connection found another process writing, how long acknowledgements go through the thread (which leaves
# the lock free a moment after each group): with one process on the file (the default), they never do.
SHARED_FILE_SECONDS = 60.0
SHARED_GAP_SECONDS = 0.001  # meanwhile, how long the thread leaves the lock free after each group
THREAD_WAIT_SECONDS = 0.02  # how long the loop waits for this process's thread to finish writing


class _Busy(Exception):
    """The event loop's connection found the file's write lock taken (it never waits for it)."""


class SQLiteDatabase:
    """A SQLite file in WAL mode; safe for several processes sharing the file.

    Acknowledgements (writes given an `order`) are committed on the event loop's own thread: those queued during
    one turn of the loop go in one transaction at its next turn. They are short, and the GIL makes a second thread a
    poor place for them: a thread takes the GIL back after each SQLite call, and under a burst of deliveries the
    loop, parsing the next requests, held it; the writer spent ~60 of its ~95 us per acknowledgement waiting
    (measured: one worker acknowledged ~14 % more on the loop's thread). That connection never waits for the write
    lock in SQLite: when this process's own thread is writing, the loop waits for that write to end (up to
    THREAD_WAIT_SECONDS, then the group goes to the thread, and so do the acknowledgements after it until the thread
    has caught up); when another process holds it, acknowledgements go through the thread
    for a while (SHARED_FILE_SECONDS), which waits for the lock (up to `busy_timeout`) taking turns with them.

    Everything else (reads, turns, retention's batches...) runs on one thread of its own with its own connections,
    from a queue: everything queued when it looks runs in order, consecutive writes in one transaction, and the
    results go back to the loop in one call per group."""

    dialect = DIALECT

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, wal_bytes: int = DEFAULT_WAL_BYTES) -> None:
        self._path = path
        self._busy_timeout = busy_timeout  # how long a write waits for another process's write lock
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None  # the thread's
        self._write_db: sqlite3.Connection | None = None  # the thread's, for writes (its busy waits are ours)
        self._loop_db: sqlite3.Connection | None = None  # the event loop's, for acknowledgements
        self._acks: list[tuple[Body[Any], asyncio.Future[Any]]] = []  # queued for the loop's next turn
        self._handed_over = 0  # acknowledgements sent to the thread (the lock was taken) and not yet committed
        # Held by whichever of this process's connections is writing: they never meet in SQLite's lock.
        self._writing = threading.Lock()
        self._shared_until = 0.0  # time.monotonic() until which another process is taken to write to the file too
        self.commits = 0  # transactions committed, and the writes they held: how well writes are grouped
        self.writes = 0
        self.checkpointer = Checkpointer(path, wal_bytes=wal_bytes)

    async def open(self) -> None:
        def connect() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = _connect(self._path, self._busy_timeout)
            db.execute("PRAGMA journal_mode=WAL")
            # Columns first: the schema's indexes may name a column an older file's table lacks.
            _add_missing_columns(db)
            db.executescript(SCHEMA)
            self._db = db
            self._write_db = _connect(self._path, 0)
            self._loop_db = _connect(self._path, 0)  # used from the loop's thread

        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()
        await self._submit(CALL, connect)

    async def close(self) -> None:
        thread, loop = self._thread, asyncio.get_running_loop()
        if self._acks:
            self._commit_acks()
        if thread is not None:
            await self._submit(CALL, self._disconnect)  # after everything queued before it
            self._jobs.put(None)
            await loop.run_in_executor(None, thread.join)
            self._thread = None
        await loop.run_in_executor(None, self.checkpointer.close)

    async def read(self, body: Body[T]) -> T:
        return await self._submit(READ, body)  # type: ignore[no-any-return]

    async def write(self, body: Body[T], *, order: str | None = None) -> T:
        loop = asyncio.get_running_loop()
        if order is None or self._loop_db is None or self._handed_over or time.monotonic() < self._shared_until:
            return await self._submit(WRITE, body)  # type: ignore[no-any-return]
        future: asyncio.Future[T] = loop.create_future()
        self._acks.append((body, future))
        if len(self._acks) == 1:
            loop.call_soon(self._commit_acks)
        return await future

    def _submit(self, kind: str, work: Any) -> asyncio.Future[Any]:
        if self._thread is None:
            raise StoreUnavailable("SQLite: the store is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(kind, work, future))
        return future

    def _commit_acks(self) -> None:
        """On the loop: the acknowledgements queued since the last turn, in one transaction; a group that finds
        the write lock taken goes to the thread."""
        group = [(body, future) for body, future in self._acks if not future.cancelled()]
        self._acks = []
        db = self._loop_db
        if not group:
            return
        if db is None:  # closed meanwhile
            _settle([(future, False, StoreUnavailable("SQLite: the store is closed")) for _, future in group])
            return
        # This process's thread may be writing (a turn, a claim): its groups take milliseconds, so wait for it
        # rather than queue behind everything else it has to do (reads of turns under way), up to a bound.
        if not self._writing.acquire(timeout=THREAD_WAIT_SECONDS):
            for body, future in group:
                self._hand_over(body, future)
            return
        try:
            outcomes = self._commit(db, [body for body, _ in group])
        finally:
            self._writing.release()
        settled = []
        for (body, future), (done, value) in zip(group, outcomes, strict=True):
            if not done and isinstance(value, _Busy):
                # Another process holds the lock. Several processes writing one file is a lasting state: the
                # acknowledgements go through the thread, which takes turns with them (the loop's connection,
                # trying at every turn of the loop, would win the lock whenever free and starve them).
                self._shared_until = time.monotonic() + SHARED_FILE_SECONDS
                self._hand_over(body, future)
            else:
                settled.append((future, done, value))
        _settle(settled)

    def _hand_over(self, body: Body[Any], future: asyncio.Future[Any]) -> None:
        self._handed_over += 1
        future.add_done_callback(self._taken_back)
        self._jobs.put(_Job(WRITE, body, future))

    def _taken_back(self, _: asyncio.Future[Any]) -> None:
        self._handed_over -= 1

    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def _disconnect(self) -> None:
        for db in (self._loop_db, self._write_db, self._db):  # the last to close checkpoints the log
            if db is not None:
                db.close()
        self._loop_db = self._write_db = self._db = None

    def _serve(self) -> None:
        """The database thread: take everything queued, run it in order (consecutive writes as one group), hand
        the outcomes back; until close() queues None."""
        while True:
            jobs = [self._jobs.get()]
            while not self._jobs.empty():
                jobs.append(self._jobs.get_nowait())
            stop = None in jobs
            settled: list[tuple[asyncio.Future[Any], bool, Any]] = []
            group: list[_Job] = []
            for job in jobs:
                if job is not None and job.kind == WRITE:
                    if not job.future.cancelled():
                        group.append(job)
                    continue
                self._run_group(group, settled)
                group = []
                if job is not None:
                    settled.append((job.future, *self._run_one(job)))
            self._run_group(group, settled)
            if group and time.monotonic() < self._shared_until:
                # Leave the lock free a moment for the other processes, which try for it every millisecond (_begin).
                time.sleep(SHARED_GAP_SECONDS)
            if settled:
                try:
                    settled[0][0].get_loop().call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # the loop is closed: nobody waits for these any more
                    pass
            if stop:
                return

    def _run_group(self, group: list[_Job], settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        if group:
            try:
                with self._writing:
                    assert self._write_db is not None, "store is not open"
                    outcomes = self._commit(self._write_db, [job.work for job in group])
            except Exception as error:  # never reached by a write's own failure: those are outcomes
                outcomes = [(False, error)] * len(group)
            settled.extend((job.future, done, value) for job, (done, value) in zip(group, outcomes, strict=True))

    def _run_one(self, job: _Job) -> tuple[bool, Any]:
        try:
            if job.kind == CALL:
                return True, job.work()
            return True, _complete(job.work(_Tx(self._connection())))
        except sqlite3.OperationalError as error:
            return False, _unavailable(error)
        except Exception as error:
            return False, error

    def _commit(self, db: sqlite3.Connection, bodies: list[Body[Any]]) -> list[tuple[bool, Any]]:
        """One transaction for the group; if one write fails, each is run alone, so only a failing one fails."""
        if len(bodies) > 1:
            try:
                return [(True, value) for value in
                        self._transaction(db, lambda tx: [_complete(body(tx)) for body in bodies], len(bodies))]
            except _Busy as busy:  # nothing ran
                return [(False, busy)] * len(bodies)
            except sqlite3.OperationalError as error:  # the file (locked, full): every write of the group fails
                return [(False, _unavailable(error))] * len(bodies)
            except Exception:
                pass
        return [self._alone(db, body) for body in bodies]

    def _alone(self, db: sqlite3.Connection, body: Body[Any]) -> tuple[bool, Any]:
        try:
            return True, self._transaction(db, lambda tx: _complete(body(tx)), 1)
        except _Busy as busy:
            return False, busy
        except sqlite3.OperationalError as error:
            return False, _unavailable(error)
        except Exception as error:
            return False, error

    def _transaction(self, db: sqlite3.Connection, run: Callable[[_Tx], T], writes: int) -> T:
        # IMMEDIATE takes the write lock up front, so concurrent processes queue instead of deadlocking.
        self._begin(db)
        try:
            result = run(_Tx(db))
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self.commits += 1
        self.writes += writes
        self.checkpointer.committed(writes)
        return result

    def _begin(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE on a connection that never waits in SQLite's busy handler: the loop's gives up at once
        (_Busy), the thread's tries again every millisecond up to `busy_timeout`. SQLite's own handler sleeps 1 to
        100 ms between tries, so a process that takes the lock again right after its commit kept the others
        out for seconds; and a wait seen here is how this process learns that others write the file too."""
        deadline = None
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                self._shared_until = time.monotonic() + SHARED_FILE_SECONDS
                if db is self._loop_db:
                    raise _Busy(str(error)) from error
                now = time.monotonic()
                deadline = deadline or now + self._busy_timeout
                if now >= deadline:
                    raise
            time.sleep(0.001)


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
    db.row_factory = sqlite3.Row
    # WAL with synchronous=NORMAL: a commit survives the process dying (what a 200 to Meta promises here); only a
    # power loss may drop the last commits, and SQLite is the laptop default, not production.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job, off the writers' threads
    # 64 MiB of page cache and the file mapped for reads: the hot pages (conversations, the newest messages, their
    # indexes) are read without a system call (acknowledgements: about +6 %).
    db.execute("PRAGMA cache_size=-65536")
    db.execute("PRAGMA mmap_size=268435456")
    return db


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: each caller's result or exception (a caller that gave up is skipped)."""
    for future, done, value in outcomes:
        if future.cancelled():
            continue
        if done:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteStore(SQLStore):
    """The Store on a SQLite file (the embedded default)."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, wal_bytes: int = DEFAULT_WAL_BYTES) -> None:
        super().__init__(SQLiteDatabase(path, busy_timeout=busy_timeout, wal_bytes=wal_bytes))


# Columns added after a file may have been created: (table, column, declaration).
_LATER_COLUMNS = [("messages", "media_path", "TEXT"), ("client_records", "ref", "TEXT"),
                  ("conversations", "turn_failures", "INTEGER NOT NULL DEFAULT 0")]


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring an older laptop database up to the schema (CREATE TABLE IF NOT EXISTS leaves old tables as they are)."""
    for table, column, declaration in _LATER_COLUMNS:
        existing = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        if existing and column not in existing:  # no table yet: the schema creates it whole
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
