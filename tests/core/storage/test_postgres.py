"""What only the Postgres store has: the schema check at open, outages, connection options, selection by URL, and
working through a pooler in transaction mode."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from core.config import Settings
from core.services import open_store
from core.storage.base import StoreUnavailable
from core.storage.postgres import PostgresStore, SchemaNotMigrated, connection_options
from core.storage.records import Debounce, NewMessage
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage
from tests.postgres import PostgresServer, PostgresUnavailable

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
DEBOUNCE = Debounce(seconds=3, max_seconds=15)
_wamids = itertools.count(1)


async def execute(url: str, query: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(query)
    finally:
        await conn.close()


class TestOpen:
    async def test_a_database_without_the_schema_is_refused_with_the_command_to_run(self, empty_url: str):
        store = PostgresStore(empty_url)
        with pytest.raises(SchemaNotMigrated, match="python -m core migrate"):
            await store.open()

    async def test_no_server_is_store_unavailable(self):
        from tests.processes import free_port
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            await store.open()

    async def test_the_store_recovers_from_connections_cut_under_it(self, postgres_url: str):
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.next_due_at()
            await execute(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            try:
                await store.next_due_at()
            except StoreUnavailable:
                pass  # the request that met the cut connection fails as "unavailable" (Meta retries the webhook)
            assert await store.next_due_at() is None
        finally:
            await store.close()


class TestSettings:
    @pytest.mark.parametrize("url", ["postgresql://u:p@db.example.supabase.co:5432/postgres",
                                     "postgres://u:p@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"])
    def test_database_url_selects_the_postgres_store(self, url: str, tmp_path: Path):
        assert isinstance(open_store(Settings(_env_file=None, database_url=url)), PostgresStore)
        sqlite = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'x.db'}")
        assert isinstance(open_store(sqlite), SQLiteStore)

    def test_transaction_pooler_gets_no_prepared_statement_cache(self):
        dsn, options = connection_options("postgresql://u:p@aws-0.pooler.supabase.com:6543/postgres?sslmode=require")
        assert options["statement_cache_size"] == 0
        assert dsn == "postgresql://u:p@aws-0.pooler.supabase.com:6543/postgres?sslmode=require"
        assert connection_options("postgresql://u@h:5432/db?pgbouncer=true")[1]["statement_cache_size"] == 0

    def test_direct_connection_keeps_asyncpgs_cache_and_options_can_be_set(self):
        dsn, options = connection_options("postgresql://u@db.x.supabase.co:5432/postgres")
        assert "statement_cache_size" not in options and options["max_size"] == 10
        dsn, options = connection_options("postgresql://u@h:6543/db?statement_cache_size=50&pool_size=3&sslmode=require")
        assert (options["statement_cache_size"], options["max_size"]) == (50, 3)
        assert dsn == "postgresql://u@h:6543/db?sslmode=require"


class TestTransactionPooler:
    """Supabase's transaction pooler keeps no prepared statement between transactions; PgBouncer in transaction
    mode does the same, so the store is run through one."""

    @pytest.fixture
    def pooled_url(self, postgres_server: PostgresServer, postgres_url: str) -> str:
        try:
            pooler = postgres_server.transaction_pooler(postgres_url, server_connections=2)
            url = pooler.__enter__()
        except PostgresUnavailable as error:
            problem = str(error)
        else:
            yield url
            pooler.__exit__(None, None, None)
            return
        pytest.fail(problem, pytrace=False)

    async def test_the_store_works_through_it_with_pgbouncer_true(self, pooled_url: str):
        stores = [PostgresStore(pooled_url + "?pgbouncer=true") for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            for user in range(10):
                await asyncio.gather(*(store.record_inbound("demo", inbound(f"u{user}"), DEBOUNCE, T0) for store in stores))
            claims = await asyncio.gather(*(store.claim_due(f"p{n}", T0 + timedelta(seconds=3), 60, 10)
                                            for n, store in enumerate(stores)))
            for store, held in zip(stores, claims):
                for claim in held:
                    batch = await store.pending_batch(claim.conversation.id)
                    reply = NewMessage(direction="out", role="assistant", text="ok", status="pending")
                    for message in await store.save_turn(claim, batch, "b", [reply], T0):
                        await store.mark_sent(message.id, f"wamid.out{message.id}", "sent", None)
                    await store.finish_turn(claim, T0)
            assert sorted(c.conversation.user_key for held in claims for c in held) == sorted(f"u{n}" for n in range(10))
            conversations = await stores[0].list_conversations("demo", 20, 0)
            assert all(c.due_at is None for c in conversations)
            counts = [len(await stores[1].list_messages(c.id, 10, 0)) for c in conversations]
            assert counts == [4] * 10  # three messages in (one per store), one reply out
        finally:
            for store in stores:
                await store.close()

    async def test_with_a_statement_cache_it_would_fail(self, pooled_url: str):
        # Made to happen, not hoped for under load: PgBouncer hands out its idle server connections last-in
        # first-out, so a statement prepared while another client held the other server connection is looked
        # for, on the next query, on that other one.
        cached = await asyncpg.connect(pooled_url, statement_cache_size=100)
        other = await asyncpg.connect(pooled_url, statement_cache_size=0)
        try:
            async with other.transaction():
                await other.execute("SELECT 1")  # holds one server connection
                assert await cached.fetchval("SELECT $1::int", 1) == 1  # prepared on the other one
            # `other` released its server connection last: the cached statement's next query lands there.
            with pytest.raises(asyncpg.InvalidSQLStatementNameError):
                await cached.fetchval("SELECT $1::int", 1)
        finally:
            await cached.close()
            await other.close()


def inbound(user: str) -> InboundMessage:
    return InboundMessage(waba_id="1001", phone_number_id="2001", wamid=f"wamid.P{next(_wamids)}", user_key=user,
                          wa_id=user, user_id=None, contact_name=None, type="text", text="hola", wa_timestamp=T0,
                          payload={"type": "text"})
