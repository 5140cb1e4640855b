"""A real SMTP server (aiosmtpd) on 127.0.0.1 in a background thread, for email tests."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


class Mailbox:
    """aiosmtpd handler: keeps what arrives; answers the first `refuse` DATA commands with 451 (try later)."""

    def __init__(self, *, refuse: int = 0) -> None:
        self.received: list[Received] = []
        self.data_commands = 0
        self._refuse = refuse
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        with self._lock:
            self.data_commands += 1
            if self._refuse > 0:
                self._refuse -= 1
                return "451 4.3.0 Mailbox busy, try again later"
            message = message_from_bytes(envelope.content, policy=policy.default)
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,  # type: ignore[arg-type]
                                          login, server.transport.get_extra_info("ssl_object") is not None))
        return "250 2.0.0 OK"


def authenticator(username: str, password: str):
    def check(server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == username \
            and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)  # not handled: 535 is sent
    return check


@contextmanager
def smtp_server(mailbox: Mailbox, *, starttls: ssl.SSLContext | None = None, implicit_tls: ssl.SSLContext | None = None,
                credentials: tuple[str, str] | None = None) -> Iterator[int]:
    """Serve until the block ends; yields the port. STARTTLS is then required, and so is AUTH with credentials."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()

    def protocol() -> SMTP:
        # aiosmtpd knows only of TLS it negotiated itself (STARTTLS): under implicit TLS it must offer AUTH
        # without requiring TLS, and it then cannot require AUTH either (it would warn of AUTH in the clear).
        return SMTP(mailbox, hostname="localhost", tls_context=starttls, require_starttls=starttls is not None,
                    authenticator=authenticator(*credentials) if credentials else None,
                    auth_required=credentials is not None and implicit_tls is None,
                    auth_require_tls=starttls is not None, loop=loop)

    started = threading.Event()
    servers: list[asyncio.AbstractServer] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        servers.append(loop.run_until_complete(loop.create_server(protocol, sock=sock, ssl=implicit_tls)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name=f"smtp-{port}", daemon=True)
    thread.start()
    if not started.wait(10):
        raise TimeoutError(f"SMTP server on port {port} did not start")
    try:
        yield port
    finally:
        async def stop() -> None:
            servers[0].close()
            await servers[0].wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
