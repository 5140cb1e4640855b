"""The console's accounts and failed logins in the store, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


class TestConsoleUsers:
    async def test_an_account_is_found_by_email_in_any_case(self, store: Store):
        added = await store.add_console_user("Ana@Example.com", "hash-1", "operator", "demo", T0)
        assert added is not None and added.email == "ana@example.com"
        found = await store.find_console_user("ANA@example.COM")
        assert found == added
        assert found.role == "operator" and found.client == "demo" and not found.disabled
        assert found.created_at == T0
        assert await store.get_console_user(added.id) == added

    async def test_an_email_is_taken_once(self, store: Store):
        assert await store.add_console_user("ana@example.com", "hash-1", "admin", None, T0) is not None
        assert await store.add_console_user("ANA@example.com", "hash-2", "viewer", "demo", T0) is None
        assert (await store.find_console_user("ana@example.com")).password_hash == "hash-1"

    async def test_list_count_and_remove(self, store: Store):
        assert await store.count_console_users() == 0
        await store.add_console_user("zoe@example.com", "h", "viewer", "demo", T0)
        await store.add_console_user("ana@example.com", "h", "admin", None, T0)
        assert [user.email for user in await store.list_console_users()] == ["ana@example.com", "zoe@example.com"]
        assert await store.count_console_users() == 2
        assert await store.remove_console_user("ZOE@example.com")
        assert not await store.remove_console_user("zoe@example.com")
        assert await store.find_console_user("zoe@example.com") is None
        assert await store.count_console_users() == 1


class TestLoginFailures:
    async def test_failures_count_per_key_within_the_window(self, store: Store):
        for minute in range(3):
            await store.add_login_failure({"email": "ana@example.com", "ip": "10.0.0.1"},
                                          T0 + timedelta(minutes=minute), T0 - timedelta(hours=1))
        await store.add_login_failure({"ip": "10.0.0.2"}, T0, T0 - timedelta(hours=1))
        assert await store.count_login_failures("email", "ana@example.com", T0) == 3
        assert await store.count_login_failures("email", "ana@example.com", T0 + timedelta(minutes=1)) == 2
        assert await store.count_login_failures("ip", "10.0.0.1", T0) == 3
        assert await store.count_login_failures("ip", "10.0.0.2", T0) == 1
        assert await store.count_login_failures("email", "10.0.0.1", T0) == 0

    async def test_old_failures_are_swept_and_a_login_clears_its_email(self, store: Store):
        await store.add_login_failure({"email": "ana@example.com", "ip": "10.0.0.1"}, T0, T0 - timedelta(hours=1))
        later = T0 + timedelta(hours=2)
        await store.add_login_failure({"email": "bob@example.com"}, later, later - timedelta(hours=1))
        assert await store.count_login_failures("email", "ana@example.com", T0 - timedelta(days=1)) == 0
        await store.clear_login_failures("email", "bob@example.com")
        assert await store.count_login_failures("email", "bob@example.com", T0) == 0
