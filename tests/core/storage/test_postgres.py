"""What only the Postgres store has: the schema check at open, outages, connection options, selection by URL."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from core.config import Settings
from core.services import open_store
from core.storage.base import StoreUnavailable
from core.storage.postgres import PostgresStore, SchemaNotMigrated, connection_options
from core.storage.sqlite import SQLiteStore
from tests.postgres import PostgresServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def empty_url(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database(migrated=False)
    yield url
    postgres_server.drop_database(url)


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

