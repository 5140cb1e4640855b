"""Console sessions: a signed, timed cookie naming the account and its CSRF token; and the login rate limit."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from fastapi import Request, Response
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from core.clock import Clock
from core.config import Settings
from core.console.secret import console_secret
from core.storage.accounts import ConsoleUser
from core.storage.base import ConsoleStore

SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"  # the login form's CSRF token, before there is a session
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class Session:
    """A logged-in account and the token every form it posts must carry."""

    user: ConsoleUser
    csrf: str
    language: str | None = None  # the account's choice when it made one (read at login, kept in the cookie)

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())  # type: ignore[union-attr]


class SessionCookies:
    """Issues and reads the console's cookies; the signing key is read (or made) on first use."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self.max_age = int(settings.console_session_hours * 3600)

    @cached_property
    def _serializer(self) -> URLSafeTimedSerializer:
        clock = self._clock

        class ClockSigner(TimestampSigner):
            """Signs and ages cookies by the app's clock, not the machine's (tests move it)."""

            def get_timestamp(self) -> int:
                return int(clock.now().timestamp())

        return URLSafeTimedSerializer(console_secret(self._settings), salt="console-session", signer=ClockSigner)

    def start(self, response: Response, request: Request, user: ConsoleUser, language: str | None = None) -> None:
        """Log `user` in: a new cookie with a new CSRF token (a session never outlives its login)."""
        data: dict[str, object] = {"u": user.id, "t": secrets.token_urlsafe(24)}
        if language:
            data["l"] = language
        value = self._serializer.dumps(data)
        _set(response, request, SESSION_COOKIE, value, self.max_age)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)

    async def read(self, request: Request, store: ConsoleStore) -> Session | None:
        """The request's session: a cookie signed by us, younger than CONSOLE_SESSION_HOURS, of an enabled account."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self.max_age)
            user_id, csrf = int(data["u"]), str(data["t"])
            language = str(data["l"]) if data.get("l") else None
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        user = await store.get_console_user(user_id)
        if user is None or user.disabled:
            return None
        return Session(user, csrf, language)

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)

    @staticmethod
    def login_token(request: Request) -> str:
        """The login form's CSRF token (double submit: the same value in a cookie and in the form)."""
        return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)

    @staticmethod
    def keep_login_token(request: Request, response: Response, token: str) -> None:
        _set(response, request, LOGIN_COOKIE, token, 3600)

    @staticmethod
    def login_token_ok(request: Request, given: str | None) -> bool:
        expected = request.cookies.get(LOGIN_COOKIE)
        return bool(expected and given) and hmac.compare_digest(expected.encode(), given.encode())  # type: ignore[union-attr]


def is_https(request: Request) -> bool:
    """Served over https here or at the proxy in front (Heroku's router sets X-Forwarded-Proto)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    # HttpOnly: no script reads it; Lax: other sites' forms do not carry it; Secure whenever the browser uses https.
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=is_https(request))


class LoginLimiter:
    """Failed logins counted in the store per email and per address: every web process (gunicorn worker, dyno)
    sees the same counts, where counts in memory would give an attacker the limit once per process."""

    def __init__(self, store: ConsoleStore, settings: Settings) -> None:
        self._store = store
        self._window = timedelta(minutes=settings.console_login_window_minutes)
        self._per_email = settings.console_login_max_failures
        self._per_ip = settings.console_login_max_failures_per_ip

    async def blocked(self, email: str, ip: str, now: datetime) -> bool:
        since = now - self._window
        return (await self._store.count_login_failures("email", email, since) >= self._per_email
                or await self._store.count_login_failures("ip", ip, since) >= self._per_ip)

    async def failed(self, email: str, ip: str, now: datetime) -> None:
        await self._store.add_login_failure({"email": email, "ip": ip}, now, now - self._window)

    async def succeeded(self, email: str) -> None:
        await self._store.clear_login_failures("email", email)
