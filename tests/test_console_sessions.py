"""Console sessions over HTTP: cookie flags, expiry by the app's clock, CSRF on login, the login limit, logout,
a removed account; and the `python -m core user` commands."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli import main as cli
from core.console.passwords import check_password, hash_password
from core.console.startup import say_how_to_log_in
from core.config import Settings
from core.storage.sqlite import SQLiteStore
from tests.conftest import DEMO, RunningApp
from tests.fakes.clock import ManualClock

PASSWORD = "correct horse battery"
SECRET = "console-secret-for-the-session-tests-0123456789"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def add_account(db: str, email: str, role: str = "operator", client: str | None = "demo") -> None:
    async def add() -> None:
        store = SQLiteStore(Path(db.removeprefix("sqlite:///")))
        await store.open()
        try:
            await store.add_console_user(email, hash_password(PASSWORD), role, client, T0)  # type: ignore[arg-type]
        finally:
            await store.close()

    asyncio.run(add())


@pytest.fixture
def app(start_app: Any, tmp_db: str) -> RunningApp:
    add_account(tmp_db, "op@demo.example")
    return start_app(DEMO.env(), console_secret=SECRET, clock=ManualClock(T0), console_login_max_failures=3)


def log_in(app: RunningApp, http: httpx.Client, email: str = "op@demo.example", password: str = PASSWORD,
           headers: dict[str, str] | None = None) -> httpx.Response:
    form = http.get(f"{app.url}/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return http.post(f"{app.url}/console/login", data={"email": email, "password": password, "csrf": csrf},
                     headers=headers or {})


def test_the_session_cookie_is_signed_httponly_lax_and_secure_behind_https(app: RunningApp):
    with httpx.Client() as http:
        answer = log_in(app, http)
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
        cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith("console_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert "Max-Age=43200" in cookie and "Secure" not in cookie
        assert PASSWORD not in cookie
        assert http.get(f"{app.url}/console/c/demo").status_code == 200
    with httpx.Client() as http:
        answer = log_in(app, http, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in next(value for value in answer.headers.get_list("set-cookie")
                                if value.startswith("console_session="))


def test_a_session_expires_by_the_apps_clock(app: RunningApp):
    with httpx.Client() as http:
        log_in(app, http)
        app.clock.advance(11 * 3600)  # type: ignore[attr-defined]
        assert http.get(f"{app.url}/console/c/demo").status_code == 200
        app.clock.advance(2 * 3600)  # type: ignore[attr-defined]
        expired = http.get(f"{app.url}/console/c/demo")
        assert expired.status_code == 303 and expired.headers["location"] == "/console/login"


def test_a_tampered_cookie_is_no_session(app: RunningApp):
    with httpx.Client() as http:
        log_in(app, http)
        value = http.cookies["console_session"]
        http.cookies.clear()
        http.cookies.set("console_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/console")
        assert http.get(f"{app.url}/console/c/demo").status_code == 303


def test_login_needs_the_forms_csrf_token(app: RunningApp):
    with httpx.Client() as http:
        answer = http.post(f"{app.url}/console/login", data={"email": "op@demo.example", "password": PASSWORD})
        assert answer.status_code == 403 and "console_session" not in answer.headers.get("set-cookie", "")


def test_failed_logins_are_limited_per_email_until_the_window_passes(app: RunningApp):
    with httpx.Client() as http:
        for _ in range(3):
            assert log_in(app, http, password="wrong password").status_code == 401
        limited = log_in(app, http)
        assert limited.status_code == 429 and "Too many failed logins" in limited.text
        app.clock.advance(16 * 60)  # type: ignore[attr-defined]
        assert log_in(app, http).status_code == 303


def test_an_unknown_email_fails_like_a_wrong_password(app: RunningApp):
    with httpx.Client() as http:
        unknown = log_in(app, http, email="nobody@demo.example")
        wrong = log_in(app, http, password="wrong password")
        assert unknown.status_code == wrong.status_code == 401
        assert "Wrong email or password" in unknown.text and "Wrong email or password" in wrong.text


def test_logout_ends_the_session(app: RunningApp):
    with httpx.Client() as http:
        log_in(app, http)
        page = http.get(f"{app.url}/console/c/demo")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert http.post(f"{app.url}/console/logout", data={"csrf": csrf}).status_code == 303
        assert http.get(f"{app.url}/console/c/demo").status_code == 303


def test_a_removed_account_loses_its_open_session(app: RunningApp, monkeypatch: pytest.MonkeyPatch):
    with httpx.Client() as http:
        log_in(app, http)
        monkeypatch.setenv("DATABASE_URL", app.settings.database_url)
        assert cli(["user", "remove", "op@demo.example"]) == 0
        assert http.get(f"{app.url}/console/c/demo").status_code == 303


def test_the_live_stream_needs_a_session(app: RunningApp):
    assert httpx.get(f"{app.url}/console/c/demo/events").status_code == 401


class TestUserCommand:
    def test_add_with_a_generated_password_list_and_remove(self, tmp_db: str, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]):
        monkeypatch.setenv("DATABASE_URL", tmp_db)
        assert cli(["user", "add", "Admin@Example.com", "--role", "admin"]) == 0
        out = capsys.readouterr().out
        password = re.search(r"Password: (\S+)", out).group(1)  # type: ignore[union-attr]
        assert "Created admin admin@example.com for every client" in out
        assert cli(["user", "list"]) == 0
        assert "admin@example.com\tadmin\t*" in capsys.readouterr().out
        stored = asyncio.run(_find(tmp_db, "admin@example.com"))
        assert check_password(stored.password_hash, password) and password not in stored.password_hash
        assert cli(["user", "remove", "admin@example.com"]) == 0
        assert cli(["user", "remove", "admin@example.com"]) == 2
        assert "no account admin@example.com" in capsys.readouterr().err

    def test_a_password_from_stdin_is_never_printed(self, tmp_db: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]):
        monkeypatch.setenv("DATABASE_URL", tmp_db)
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
        assert cli(["user", "add", "op@demo.example", "--role", "operator", "--client", "demo", "--password-stdin"]) == 0
        out = capsys.readouterr().out
        assert "Created operator op@demo.example for client demo" in out and "a long enough password" not in out
        stored = asyncio.run(_find(tmp_db, "op@demo.example"))
        assert check_password(stored.password_hash, "a long enough password")

    @pytest.mark.parametrize(("args", "reason"), [
        (["x@demo.example", "--role", "viewer"], "sees one client: give --client"),
        (["x@demo.example", "--role", "admin", "--client", "demo"], "an admin sees every client"),
        (["x@demo.example", "--role", "operator", "--client", "nope"], "no client 'nope'; clients: demo"),
        (["not-an-email", "--role", "admin"], "is not an email address"),
        (["x@demo.example", "--role", "owner"], "invalid choice"),
    ])
    def test_bad_accounts_are_refused_with_the_reason(self, tmp_db: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], args: list[str], reason: str):
        monkeypatch.setenv("DATABASE_URL", tmp_db)
        assert cli(["user", "add", *args]) == 2
        assert reason in capsys.readouterr().err

    def test_a_short_password_from_stdin_is_refused(self, tmp_db: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]):
        monkeypatch.setenv("DATABASE_URL", tmp_db)
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert cli(["user", "add", "a@demo.example", "--role", "admin", "--password-stdin"]) == 2
        assert "at least 10" in capsys.readouterr().err


def test_a_start_with_no_accounts_says_how_to_log_in(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    async def run() -> None:
        store = SQLiteStore(tmp_path / "app.db")
        await store.open()
        try:
            with caplog.at_level(logging.WARNING, logger="core.console"):
                await say_how_to_log_in(store, Settings(_env_file=None))
            assert "python -m core user add you@example.com --role admin" in caplog.records[-1].detail  # type: ignore[attr-defined]
            caplog.clear()
            await store.add_console_user("a@example.com", "h", "admin", None, T0)
            await say_how_to_log_in(store, Settings(_env_file=None))
            assert not caplog.records
        finally:
            await store.close()

    asyncio.run(run())


async def _find(db: str, email: str) -> Any:
    store = SQLiteStore(Path(db.removeprefix("sqlite:///")))
    await store.open()
    try:
        return await store.find_console_user(email)
    finally:
        await store.close()
