"""Email notifications through a real SMTP server on 127.0.0.1: TLS, auth, retries, and failures logged."""

from __future__ import annotations

import logging
import ssl

import pytest
from pydantic import SecretStr, ValidationError

from core.logs import KeyValueFormatter
from core.notify.email import EmailNotifier, EmailSettings, RetryPolicy, SmtpConfig
from tests.core.notify.smtp_server import Mailbox, closed_port, smtp_server

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)
PASSWORD = "app-password-0123456789"
USER = "bot@acme.test"


def config(port: int, security: str = "none", *, password: str | None = None, timeout: float = 5) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, sender=USER, recipients=("ventas@acme.test", "ana@acme.test"),
                      security=security, username=USER if password else None,  # type: ignore[arg-type]
                      password=SecretStr(password) if password else None, timeout=timeout)


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "notify.email_failed"]


def assert_no_password_logged(caplog: pytest.LogCaptureFixture) -> None:
    formatter = KeyValueFormatter("%(name)s %(message)s")
    for record in caplog.records:
        assert PASSWORD not in formatter.format(record)
        assert PASSWORD not in repr(vars(record))


class TestDelivery:
    async def test_a_plain_email_arrives_with_its_headers_and_utf8_text(self):
        mailbox = Mailbox()
        with smtp_server(mailbox) as port:
            async with EmailNotifier(retry=FAST) as notifier:
                queued = notifier.notify("acme", config(port), "Nuevo lead: Ana Pérez",
                                         "Curso: Diseño de marca\nEmail: ana@example.com", reply_to="ana@example.com")
                assert queued and mailbox.received == []  # queued; nothing is sent until the caller yields
        [received] = mailbox.received
        assert received.mail_from == USER
        assert received.rcpt_tos == ["ventas@acme.test", "ana@acme.test"]
        assert received.message["Subject"] == "Nuevo lead: Ana Pérez"
        assert received.message["Reply-To"] == "ana@example.com"
        assert received.message.get_content().splitlines() == ["Curso: Diseño de marca", "Email: ana@example.com"]

    async def test_starttls_with_login(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext):
        mailbox = Mailbox()
        with smtp_server(mailbox, starttls=server_tls, credentials=(USER, PASSWORD)) as port:
            async with EmailNotifier(retry=FAST, ssl_context=client_tls) as notifier:
                notifier.notify("acme", config(port, "starttls", password=PASSWORD), "Hand-over", "Ana pide hablar.")
        [received] = mailbox.received
        assert (received.login, received.tls) == (USER, True)

    async def test_implicit_tls_with_login(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext):
        mailbox = Mailbox()
        with smtp_server(mailbox, implicit_tls=server_tls, credentials=(USER, PASSWORD)) as port:
            async with EmailNotifier(retry=FAST, ssl_context=client_tls) as notifier:
                notifier.notify("acme", config(port, "ssl", password=PASSWORD), "Hola", "Texto", to=("otro@acme.test",))
        [received] = mailbox.received
        assert received.login == USER
        assert received.rcpt_tos == ["otro@acme.test"]


class TestRetries:
    async def test_a_server_that_refuses_twice_gets_the_email_on_the_third_try(self, caplog: pytest.LogCaptureFixture):
        mailbox = Mailbox(refuse=2)
        with caplog.at_level(logging.INFO, logger="core.notify"), smtp_server(mailbox) as port:
            async with EmailNotifier(retry=FAST) as notifier:
                notifier.notify("acme", config(port), "Lead", "Ana")
        assert mailbox.data_commands == 3
        assert len(mailbox.received) == 1
        retries = [r for r in caplog.records if r.getMessage() == "notify.email_retry"]
        assert [r.attempt for r in retries] == [1, 2]
        assert "451" in retries[0].error
        [sent] = [r for r in caplog.records if r.getMessage() == "notify.email_sent"]
        assert (sent.client, sent.attempts) == ("acme", 3)
        assert failures(caplog) == []

    async def test_a_server_that_is_down_is_retried_then_logged_with_client_and_without_password(
            self, caplog: pytest.LogCaptureFixture):
        with caplog.at_level(logging.INFO, logger="core.notify"):
            async with EmailNotifier(retry=FAST) as notifier:
                notifier.notify("acme", config(closed_port(), "starttls", password=PASSWORD), "Nuevo lead: Ana", "x")
        [failure] = failures(caplog)
        assert failure.levelno == logging.ERROR
        assert (failure.client, failure.subject, failure.attempts) == ("acme", "Nuevo lead: Ana", 3)
        assert failure.recipients == "ventas@acme.test, ana@acme.test"
        assert "ConnectionRefusedError" in failure.reason
        assert len([r for r in caplog.records if r.getMessage() == "notify.email_retry"]) == 2
        assert_no_password_logged(caplog)

    async def test_a_wrong_password_is_not_retried(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
                                                   caplog: pytest.LogCaptureFixture):
        mailbox = Mailbox()
        with caplog.at_level(logging.INFO, logger="core.notify"), \
                smtp_server(mailbox, starttls=server_tls, credentials=(USER, "the-right-one")) as port:
            async with EmailNotifier(retry=FAST, ssl_context=client_tls) as notifier:
                notifier.notify("acme", config(port, "starttls", password=PASSWORD), "Lead", "x")
        [failure] = failures(caplog)
        assert failure.attempts == 1
        assert "SMTPAuthenticationError" in failure.reason
        assert mailbox.received == []
        assert_no_password_logged(caplog)

    async def test_an_untrusted_certificate_is_refused_and_not_retried(self, server_tls: ssl.SSLContext,
                                                                       caplog: pytest.LogCaptureFixture):
        mailbox = Mailbox()
        with caplog.at_level(logging.INFO, logger="core.notify"), smtp_server(mailbox, starttls=server_tls) as port:
            async with EmailNotifier(retry=FAST, ssl_context=ssl.create_default_context()) as notifier:
                notifier.notify("acme", config(port, "starttls"), "Lead", "x")
        [failure] = failures(caplog)
        assert failure.attempts == 1
        assert "SSLCertVerificationError" in failure.reason
        assert mailbox.received == []


class TestNeverLostSilently:
    async def test_a_full_queue_refuses_and_logs(self, caplog: pytest.LogCaptureFixture):
        mailbox = Mailbox()
        with caplog.at_level(logging.INFO, logger="core.notify"), smtp_server(mailbox) as port:
            async with EmailNotifier(retry=FAST, queue_size=1) as notifier:
                assert notifier.notify("acme", config(port), "uno", "1")
                assert not notifier.notify("acme", config(port), "dos", "2")
        assert [r.message["Subject"] for r in mailbox.received] == ["uno"]
        [failure] = failures(caplog)
        assert (failure.subject, failure.reason) == ("dos", "the queue is full")

    async def test_a_stopped_notifier_refuses_and_logs(self, caplog: pytest.LogCaptureFixture):
        notifier = EmailNotifier()
        with caplog.at_level(logging.INFO, logger="core.notify"):
            assert not notifier.notify("acme", config(closed_port()), "Lead", "x")
        [failure] = failures(caplog)
        assert (failure.client, failure.reason) == ("acme", "the notifier is not running")

    async def test_what_is_left_at_shutdown_is_logged(self, caplog: pytest.LogCaptureFixture):
        slow = RetryPolicy(attempts=5, initial_wait=30, max_wait=30)  # the first email waits out its retry
        mailbox = Mailbox(refuse=100)
        with caplog.at_level(logging.INFO, logger="core.notify"), smtp_server(mailbox) as port:
            async with EmailNotifier(retry=slow, workers=1, drain_seconds=0.3) as notifier:
                notifier.notify("acme", config(port), "primero", "1")
                notifier.notify("acme", config(port), "segundo", "2")
        reasons = {r.subject: r.reason for r in failures(caplog)}
        assert reasons == {"primero": "the server stopped while it was being sent; it may not have arrived",
                           "segundo": "the server stopped before it was sent"}


class TestEmailSettings:
    def test_read_with_the_client_prefix(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("ACME_SMTP_HOST", "smtp.gmail.com")
        monkeypatch.setenv("ACME_SMTP_SECURITY", "SSL")
        monkeypatch.setenv("ACME_SMTP_USERNAME", USER)
        monkeypatch.setenv("ACME_SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("ACME_SMTP_TO", "ventas@acme.test, ana@acme.test")
        smtp = EmailSettings(_env_prefix="ACME_", _env_file=None).smtp_config()  # type: ignore[call-arg]
        assert smtp is not None
        assert (smtp.host, smtp.port, smtp.security, smtp.sender) == ("smtp.gmail.com", 465, "ssl", USER)
        assert smtp.recipients == ("ventas@acme.test", "ana@acme.test")
        assert PASSWORD not in repr(smtp)

    def test_no_host_means_no_email(self):
        assert EmailSettings(_env_prefix="ACME_", _env_file=None).smtp_config() is None  # type: ignore[call-arg]

    @pytest.mark.parametrize(("values", "message"), [
        ({"smtp_host": "smtp.acme.test", "smtp_from": USER}, "SMTP_TO"),
        ({"smtp_host": "smtp.acme.test", "smtp_to": "ventas@acme.test"}, "SMTP_FROM"),
        ({"smtp_host": "smtp.acme.test", "smtp_from": USER, "smtp_to": "ventas", }, "not an email address"),
        ({"smtp_host": "h", "smtp_from": USER, "smtp_to": USER, "smtp_username": USER}, "SMTP_PASSWORD"),
        ({"smtp_host": "h", "smtp_from": USER, "smtp_to": USER, "smtp_security": "tls"}, "smtp_security"),
    ])
    def test_incomplete_settings_are_refused(self, values: dict[str, str], message: str):
        with pytest.raises(ValidationError, match=message):
            EmailSettings(_env_file=None, **values)  # type: ignore[arg-type]

    def test_the_port_follows_the_security(self):
        base = {"smtp_host": "h", "smtp_from": USER, "smtp_to": USER}
        ports = {security: EmailSettings(_env_file=None, smtp_security=security, **base).smtp_config().port  # type: ignore
                 for security in ("starttls", "ssl", "none")}
        assert ports == {"starttls": 587, "ssl": 465, "none": 25}
