"""Apply supabase/migrations/*.sql to a Postgres database, each once, in order (the release phase runs it).

Applied versions are recorded where the Supabase CLI records them (`supabase_migrations.schema_migrations`:
version = the file name's leading digits, name = the rest), so `supabase db push` and this command never apply
the same file twice. Each file runs in its own transaction under an advisory lock: two release phases racing
apply it once. Run it on the direct connection (or the session pooler), not the transaction pooler.

`python -m core.storage.migrate` runs it on DATABASE_URL; with SQLite there is nothing to do (the embedded store
creates its schema when it opens).
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from core.storage.base import StoreUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")
# pg_advisory_xact_lock(key1, key2): this command's own lock namespace (the store uses others).
_LOCK = (0x5742, 1)

_TRACKING = """
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;
"""


class MigrationError(Exception):
    """A migration file failed (its transaction was rolled back: the database is as before that file)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, oldest first; a name the Supabase CLI would not take is an error, not skipped."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named <timestamp>_<name>.sql")
        version, name = match.groups()
        if version in found:
            raise ValueError(f"{path}: version {version} is also {found[version].path.name}")
        found[version] = Migration(version, name, path)
    return sorted(found.values(), key=lambda migration: int(migration.version))


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations the database has not recorded yet; returns the file names applied now."""
    pending = migrations(directory)
    try:
        # No statement cache: it also works through a pooler, and DDL would invalidate cached statements anyway.
        conn = await asyncpg.connect(dsn, statement_cache_size=0, timeout=30)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise StoreUnavailable(f"PostgreSQL: cannot connect to run migrations: {error}") from error
    applied: list[str] = []
    step = "the migration table"
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *_LOCK)
            await conn.execute(_TRACKING)
        for migration in pending:
            step = migration.path.name
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *_LOCK)
                done = await conn.fetchval("SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = $1",
                                           migration.version)
                if done:
                    continue
                sql = migration.sql
                await conn.execute(sql)  # no arguments: the simple protocol, so a file may hold many statements
                await conn.execute(
                    "INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, $3)",
                    migration.version, migration.name, [sql])
            applied.append(migration.path.name)
    except asyncpg.PostgresError as error:
        raise MigrationError(f"PostgreSQL: migration {step} failed: {type(error).__name__}: {error}") from error
    except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as error:
        raise StoreUnavailable(f"PostgreSQL: connection lost during migration {step}: {error}") from error
    finally:
        await conn.close()
    return applied


def main() -> int:
    """Apply the migrations to DATABASE_URL; prints what it did. Exit 0 when the schema is up to date."""
    from core.config import load_settings  # here, so that importing this module needs no settings
    from core.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not settings.database_url.startswith(("postgresql://", "postgres://")):
        print("DATABASE_URL is SQLite: nothing to migrate (the store creates its schema when it opens)")
        return 0
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except (StoreUnavailable, MigrationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name in applied:
        print(f"applied {name}")
    print(f"schema up to date ({len(migrations())} migrations, {len(applied)} applied now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
