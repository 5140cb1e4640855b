"""Email through a real SMTP server on 127.0.0.1: TLS, auth, and which failures are worth retrying."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from pydantic import SecretStr, ValidationError

from core.notify.email import Email, EmailSettings, SmtpConfig, SmtpMailer, describe_error, is_temporary
from tests.core.notify.smtp_server import Mailbox, closed_port, smtp_server

pytestmark = pytest.mark.anyio

PASSWORD = "app-password-0123456789"
USER = "bot@acme.test"


def config(port: int, security: str = "none", *, password: str | None = None, timeout: float = 5) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, sender=USER, recipients=("ventas@acme.test", "ana@acme.test"),
                      security=security, username=USER if password else None,  # type: ignore[arg-type]
                      password=SecretStr(password) if password else None, timeout=timeout)


def email(port: int, security: str = "none", *, password: str | None = None, subject: str = "Lead", body: str = "x",
          **fields: object) -> Email:
    return Email("acme", config(port, security, password=password), subject, body, **fields)  # type: ignore[arg-type]


class TestDelivery:
    async def test_a_plain_email_arrives_with_its_headers_and_utf8_text(self):
        mailbox = Mailbox()
        with smtp_server(mailbox) as port:
            refused = await SmtpMailer().send(email(port, subject="Nuevo lead: Ana Pérez",
                                                    body="Curso: Diseño de marca\nEmail: ana@example.com",
                                                    reply_to="ana@example.com", message_id="<effect-1.b@acme>"))
        assert refused == {}
        [received] = mailbox.received
        assert received.mail_from == USER
        assert received.rcpt_tos == ["ventas@acme.test", "ana@acme.test"]
        assert received.message["Subject"] == "Nuevo lead: Ana Pérez"
        assert received.message["Reply-To"] == "ana@example.com"
        assert received.message["Message-ID"] == "<effect-1.b@acme>"
        assert received.message.get_content().splitlines() == ["Curso: Diseño de marca", "Email: ana@example.com"]

    async def test_starttls_with_login(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext):
        mailbox = Mailbox()
        with smtp_server(mailbox, starttls=server_tls, credentials=(USER, PASSWORD)) as port:
            await SmtpMailer(client_tls).send(email(port, "starttls", password=PASSWORD, subject="Hand-over"))
        [received] = mailbox.received
        assert (received.login, received.tls) == (USER, True)

    async def test_implicit_tls_with_login(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext):
        mailbox = Mailbox()
        with smtp_server(mailbox, implicit_tls=server_tls, credentials=(USER, PASSWORD)) as port:
            await SmtpMailer(client_tls).send(email(port, "ssl", password=PASSWORD, to=("otro@acme.test",)))
        [received] = mailbox.received
        assert received.login == USER
        assert received.rcpt_tos == ["otro@acme.test"]


class TestFailuresSayWhetherToRetry:
    async def test_a_refusal_with_451_is_temporary(self):
        with smtp_server(Mailbox(refuse=1)) as port:
            with pytest.raises(smtplib.SMTPDataError) as raised:
                await SmtpMailer().send(email(port))
        assert is_temporary(raised.value)

    async def test_a_server_that_is_down_is_temporary_and_described_without_the_password(self):
        message = email(closed_port(), "starttls", password=PASSWORD)
        with pytest.raises(OSError) as raised:
            await SmtpMailer().send(message)
        assert is_temporary(raised.value)
        assert "ConnectionRefusedError" in describe_error(raised.value, message)

    async def test_a_wrong_password_is_final_and_never_echoed(self, server_tls: ssl.SSLContext,
                                                              client_tls: ssl.SSLContext):
        mailbox = Mailbox()
        with smtp_server(mailbox, starttls=server_tls, credentials=(USER, "the-right-one")) as port:
            message = email(port, "starttls", password=PASSWORD)
            with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
                await SmtpMailer(client_tls).send(message)
        assert not is_temporary(raised.value)
        assert PASSWORD not in describe_error(raised.value, message)
        assert mailbox.received == []

    async def test_an_untrusted_certificate_is_final(self, server_tls: ssl.SSLContext):
        with smtp_server(Mailbox(), starttls=server_tls) as port:
            with pytest.raises(ssl.SSLCertVerificationError) as raised:
                await SmtpMailer(ssl.create_default_context()).send(email(port, "starttls"))
        assert not is_temporary(raised.value)


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
