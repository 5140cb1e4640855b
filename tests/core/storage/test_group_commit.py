"""Concurrent acknowledgements are committed together (SQLite: every write; Postgres: writes given an order), and
each write still stands or falls on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.storage.base import StoreUnavailable
from core.storage.postgres import PostgresStore
from core.storage.records import Debounce
from core.storage.sql import Json, Tx
from core.storage.sql_store import SQLStore
from core.storage.sqlite import SQLiteDatabase, SQLiteStore
from core.webhook.events import InboundMessage
from tests.unit.fakes import eventually

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def inbound(n: int) -> InboundMessage:
    user = f"54911555{n:05d}"
    return InboundMessage(waba_id="1001", phone_number_id="2001", wamid=f"wamid.G{n}", user_key=user, wa_id=user,
                          user_id=None, contact_name=None, type="text", text=f"hola {n}", wa_timestamp=NOW,
                          payload={"type": "text"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLStore]:
    if request.param == "sqlite":
        opened: SQLStore = SQLiteStore(tmp_path / "store.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


async def test_concurrent_acknowledgements_are_all_stored(any_store: SQLStore) -> None:
    store = any_store
    results = await asyncio.gather(*(store.record_inbound("demo", inbound(n % 150), Debounce(3, 15), NOW)
                                     for n in range(300)))  # each message twice: stored once, the other a duplicate
    assert sum(result.is_new for result in results) == 150
    for n in (0, 75, 149):
        conversation = await store.find_conversation("demo", "2001", f"54911555{n:05d}")
        assert conversation is not None and conversation.due_at is not None
        [message] = await store.pending_batch(conversation.id)
        assert message.text == f"hola {n}"


async def test_sqlite_commits_concurrent_acknowledgements_together(store: SQLiteStore) -> None:
    results = await asyncio.gather(*(store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW)
                                     for n in range(200)))
    assert all(result.is_new for result in results)
    database = store.database
    assert isinstance(database, SQLiteDatabase)
    assert database.writes == 200
    assert database.commits < 200 / 4  # grouped: one transaction held many acknowledgements
    for n in (0, 99, 199):
        conversation = await store.find_conversation("demo", "2001", f"54911555{n:05d}")
        assert conversation is not None
        [message] = await store.pending_batch(conversation.id)
        assert message.text == f"hola {n}"


async def test_a_failing_write_rolls_back_alone_and_its_caller_gets_the_error(any_store: SQLStore) -> None:
    store = any_store

    async def failing(tx: Tx) -> None:
        await tx.execute("INSERT INTO client_documents (client, key, data, updated_at) VALUES ('demo', 'bad', $1, $2)",
                         Json(1), NOW)
        raise ValueError("the turn's own bug")

    writes = [store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW) for n in range(10)]
    outcomes = await asyncio.gather(*writes[:5], store.database.write(failing, order="c\x00demo"), *writes[5:],
                                    return_exceptions=True)
    assert isinstance(outcomes[5], ValueError)
    assert all(not isinstance(outcome, BaseException) for index, outcome in enumerate(outcomes) if index != 5)
    assert await store.get_document("demo", "bad") is None  # its insert was rolled back
    for n in range(10):
        assert await store.find_conversation("demo", "2001", f"54911555{n:05d}") is not None


async def test_a_body_that_waits_on_something_else_is_refused(store: SQLiteStore) -> None:
    async def wanders(tx: Tx) -> None:
        await asyncio.sleep(0)  # a transaction on the writer's thread cannot wait for the event loop

    with pytest.raises(RuntimeError, match="awaited something other"):
        await store.database.write(wanders)
    await store.put_document("demo", "after", {"ok": True}, NOW)  # the writer carries on
    assert await store.get_document("demo", "after") == {"ok": True}


async def test_a_locked_file_is_reported_unavailable_to_every_write_of_the_group(tmp_path: Path) -> None:
    import sqlite3

    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
        outcomes = await asyncio.gather(*(store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW)
                                          for n in range(3)), return_exceptions=True)
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
        other.execute("ROLLBACK")
        assert (await store.record_inbound("demo", inbound(7), Debounce(3, 15), NOW)).is_new
    finally:
        other.close()
        await store.close()



async def test_acknowledgements_wait_for_a_lock_another_process_holds_and_then_all_commit(tmp_path: Path) -> None:
    # The event loop's connection never waits for the write lock; its group goes to the database's thread,
    # which waits (busy_timeout), so a lock held for a moment delays acknowledgements and fails none.
    import sqlite3

    store = SQLiteStore(tmp_path / "store.db", busy_timeout=30)
    await store.open()
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        writes = [asyncio.create_task(store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW)) for n in range(5)]
        await asyncio.sleep(0.2)  # the lock is held: none can have committed
        assert not any(write.done() for write in writes)
        more = [asyncio.create_task(store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW))
                for n in range(5, 8)]  # queued behind the handed-over ones, not ahead of them
        other.execute("ROLLBACK")
        results = await asyncio.wait_for(asyncio.gather(*writes, *more), 30)
        assert all(result.is_new for result in results)
        assert (await store.record_inbound("demo", inbound(9), Debounce(3, 15), NOW)).is_new  # back on the loop
        for n in (0, 7, 9):
            assert await store.find_conversation("demo", "2001", f"54911555{n:05d}") is not None
    finally:
        other.close()
        await store.close()



async def test_two_stores_on_one_file_take_turns_and_every_acknowledgement_commits(tmp_path: Path) -> None:
    # As two worker processes sharing the laptop's file: each finds the other holding the lock, and neither may
    # keep it from the other (both bursts complete, every message stored once).
    first, second = SQLiteStore(tmp_path / "store.db"), SQLiteStore(tmp_path / "store.db")
    await first.open()
    await second.open()
    try:
        for start in range(0, 1200, 300):
            results = await asyncio.wait_for(asyncio.gather(
                *(first.record_inbound("demo", inbound(n), Debounce(3, 15), NOW) for n in range(start, start + 150)),
                *(second.record_inbound("demo", inbound(n), Debounce(3, 15), NOW)
                  for n in range(start + 150, start + 300))), 60)
            assert all(result.is_new for result in results)
        for n in (0, 299, 1199):
            conversation = await second.find_conversation("demo", "2001", f"54911555{n:05d}")
            assert conversation is not None
            [message] = await first.pending_batch(conversation.id)
            assert message.text == f"hola {n}"
    finally:
        await first.close()
        await second.close()


async def test_the_log_is_checkpointed_off_the_writer_and_stays_short(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", wal_bytes=256 * 1024)
    await store.open()
    database = store.database
    assert isinstance(database, SQLiteDatabase)
    wal = tmp_path / "store.db-wal"
    try:
        largest = 0
        for start in range(0, 6000, 200):  # groups of concurrent acknowledgements, as under load
            await asyncio.gather(*(store.record_inbound("demo", inbound(n), Debounce(3, 15), NOW)
                                   for n in range(start, start + 200)))
            largest = max(largest, wal.stat().st_size)
            await eventually(lambda: database.checkpointer.idle, timeout=30)  # (a busy machine may lag it)
        assert database.checkpointer.checkpoints > 0
        # The writer never checkpoints (autocheckpoint off), yet the log does not grow with the writes: the
        # checkpointer copies it back and SQLite starts it over.
        assert largest < 20 * 256 * 1024
        conversation = await store.find_conversation("demo", "2001", f"54911555{5999:05d}")
        assert conversation is not None
    finally:
        await store.close()
    assert not wal.exists() or wal.stat().st_size == 0  # closed: everything is in the database file
