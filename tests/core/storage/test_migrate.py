"""The schema on Postgres: migrations applied once, in order, as the Supabase CLI records them; RLS on every table."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from core.storage.postgres import TABLES
from core.storage.migrate import MIGRATIONS_DIR, MigrationError, migrate, migrations
from core.storage.sqlite import SCHEMA
from tests.postgres import PostgresServer
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.anyio


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


class TestMigrate:
    async def test_applies_every_file_once_and_records_it_as_the_supabase_cli_does(self, empty_url: str):
        assert await migrate(empty_url) == [m.path.name for m in migrations()]
        assert await migrate(empty_url) == []
        rows = await fetch(empty_url, "SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in migrations()]

    async def test_a_failing_file_leaves_the_database_as_it_was(self, empty_url: str, tmp_path: Path):
        for path in migrations():
            (tmp_path / path.path.name).write_text(path.sql)
        (tmp_path / "29990101000000_broken.sql").write_text("CREATE TABLE later (id int); SELECT no_such_function();")
        with pytest.raises(MigrationError, match="29990101000000_broken.sql"):
            await migrate(empty_url, tmp_path)
        assert not await fetch(empty_url, "SELECT 1 FROM pg_tables WHERE tablename = 'later'")
        assert len(await fetch(empty_url, "SELECT 1 FROM pg_tables WHERE tablename = ANY($1)", list(TABLES))) == len(TABLES)

    def test_file_names_follow_the_supabase_cli(self):
        assert migrations(), MIGRATIONS_DIR
        assert all(len(m.version) == 14 for m in migrations())

    async def test_the_same_tables_and_columns_as_sqlite(self, postgres_url: str):
        sqlite = sqlite3.connect(":memory:")
        sqlite.executescript(SCHEMA)
        expected = {table: [row[1] for row in sqlite.execute(f"PRAGMA table_info({table})")] for table in TABLES}
        rows = await fetch(postgres_url, "SELECT table_name, column_name FROM information_schema.columns "
                                         "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        actual: dict[str, list[str]] = {}
        for row in rows:
            actual.setdefault(row["table_name"], []).append(row["column_name"])
        assert actual == expected

    async def test_row_level_security_hides_every_table_from_anonymous_users(self, postgres_url: str):
        rows = await fetch(postgres_url, "SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY($1)",
                           list(TABLES))
        assert {r["relname"]: r["relrowsecurity"] for r in rows} == {table: True for table in TABLES}
        assert await fetch(postgres_url, "SELECT * FROM pg_policies WHERE schemaname = 'public'") == []
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("INSERT INTO client_documents VALUES ('demo', 'secret', '{}', now())")
            # As on Supabase: the API's role may SELECT the table, and still sees no row without a policy.
            await conn.execute("DO $$ BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
            await conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon")
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE anon")
                assert await conn.fetch("SELECT * FROM client_documents") == []
        finally:
            await conn.close()


class TestCommand:
    def run(self, database_url: str) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL",)}
        # Exactly the Procfile's release command.
        release = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("release:"))
        command = release.removeprefix("release:").split()
        assert command[0] == "python"
        return subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "DATABASE_URL": database_url}, timeout=60)

    def test_migrates_database_url_and_says_what_it_did(self, empty_url: str):
        first = self.run(empty_url)
        assert first.returncode == 0, first.stderr
        assert f"applied {migrations()[0].path.name}" in first.stdout
        again = self.run(empty_url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == [f"schema up to date ({len(migrations())} migrations, 0 applied now)"]

    def test_sqlite_has_nothing_to_migrate(self, tmp_path: Path):
        done = self.run(f"sqlite:///{tmp_path / 'app.db'}")
        assert done.returncode == 0 and "nothing to migrate" in done.stdout

    def test_an_unreachable_database_fails_with_a_message(self):
        done = self.run(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
        assert done.returncode == 1 and "cannot connect" in done.stderr
