"""The store's SQL for the console: accounts and failed logins (a mixin of SQLStore)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.storage.accounts import ConsoleRole, ConsoleUser, LoginScope
from core.storage.sql import Database, Dialect, Row


class ConsoleSQL:
    """Console accounts and the failed logins that rate limit them, over the store's `Database`."""

    database: Database
    _d: Dialect

    async def add_console_user(self, email: str, password_hash: str, role: ConsoleRole, client: str | None,
                               now: datetime) -> ConsoleUser | None:
        row = await self.database.write(lambda tx: tx.fetchrow(
            """INSERT INTO console_users (email, password_hash, role, client, created_at) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (email) DO NOTHING RETURNING *""", email.lower(), password_hash, role, client, now))
        return self._console_user(row) if row is not None else None

    async def get_console_user(self, user_id: int) -> ConsoleUser | None:
        row = await self.database.read(lambda tx: tx.fetchrow("SELECT * FROM console_users WHERE id = $1", user_id))
        return self._console_user(row) if row is not None else None

    async def find_console_user(self, email: str) -> ConsoleUser | None:
        row = await self.database.read(lambda tx: tx.fetchrow(
            "SELECT * FROM console_users WHERE email = $1", email.lower()))
        return self._console_user(row) if row is not None else None

    async def list_console_users(self) -> list[ConsoleUser]:
        rows = await self.database.read(lambda tx: tx.fetch("SELECT * FROM console_users ORDER BY email"))
        return [self._console_user(row) for row in rows]

    async def remove_console_user(self, email: str) -> bool:
        removed = await self.database.write(lambda tx: tx.execute(
            "DELETE FROM console_users WHERE email = $1", email.lower()))
        return removed > 0

    async def count_console_users(self) -> int:
        return int(await self.database.read(lambda tx: tx.fetchval("SELECT COUNT(*) FROM console_users")))

    async def add_login_failure(self, keys: dict[LoginScope, str], now: datetime, forget_before: datetime) -> None:
        async def write(tx: Any) -> None:
            # Failures older than any window are of no use: each new one sweeps them away.
            await tx.execute("DELETE FROM console_login_failures WHERE failed_at < $1", forget_before)
            await tx.executemany("INSERT INTO console_login_failures (scope, key, failed_at) VALUES ($1, $2, $3)",
                                 [(scope, key, now) for scope, key in keys.items()])

        await self.database.write(write)

    async def count_login_failures(self, scope: LoginScope, key: str, since: datetime) -> int:
        return int(await self.database.read(lambda tx: tx.fetchval(
            "SELECT COUNT(*) FROM console_login_failures WHERE scope = $1 AND key = $2 AND failed_at >= $3",
            scope, key, since)))

    async def clear_login_failures(self, scope: LoginScope, key: str) -> None:
        await self.database.write(lambda tx: tx.execute(
            "DELETE FROM console_login_failures WHERE scope = $1 AND key = $2", scope, key))

    def _console_user(self, row: Row) -> ConsoleUser:
        return ConsoleUser(id=row["id"], email=row["email"], password_hash=row["password_hash"], role=row["role"],
                           client=row["client"], disabled=bool(row["disabled"]),
                           created_at=self._d.time(row["created_at"]))  # type: ignore[arg-type]
