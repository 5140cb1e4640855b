"""Email to a client's staff over SMTP: its settings, the message, and one attempt to send it.

Emails are effects: a turn stores them in the effects outbox and core/effects sends them with retries, so none
waits in memory. smtplib (stdlib) in a worker thread rather than an async SMTP library: notifications are rare,
smtplib speaks STARTTLS, implicit TLS and AUTH and is maintained with Python, and it adds no dependency. A send is
bounded by the socket timeout, since a thread cannot be cancelled.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


Security = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


class EmailSettings(BaseSettings):
    """A client's SMTP variables, read with its prefix: `<NAME>_SMTP_HOST`, `<NAME>_SMTP_TO`…

    Use it as a mixin of the client's settings class, or on its own:
    `EmailSettings(_env_prefix="EMPRENDEMY_")`. No SMTP_HOST: the client sends no email.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: Security = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_to: Annotated[list[str], NoDecode] = []
    smtp_timeout_seconds: float = Field(default=15.0, gt=0)

    @field_validator("smtp_host", "smtp_port", "smtp_username", "smtp_password", "smtp_from", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_security", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("smtp_to", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("smtp_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.smtp_host is None:
            return self
        if not self.smtp_to:
            raise ValueError("SMTP_TO (comma-separated addresses) must be set when SMTP_HOST is")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD go together")
        if self.smtp_from is None and (self.smtp_username is None or "@" not in self.smtp_username):
            raise ValueError("SMTP_FROM must be set (or SMTP_USERNAME be an email address)")
        _check_address(self.smtp_from or self.smtp_username or "")
        return self

    def smtp_config(self) -> SmtpConfig | None:
        """The server to send through, or None when SMTP_HOST is not set."""
        if self.smtp_host is None:
            return None
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port or DEFAULT_PORTS[self.smtp_security],
            security=self.smtp_security,
            username=self.smtp_username,
            password=self.smtp_password,
            sender=self.smtp_from or self.smtp_username or "",
            recipients=tuple(self.smtp_to),
            timeout=self.smtp_timeout_seconds,
        )


def _check_address(address: str) -> None:
    _, parsed = parseaddr(address)
    if "@" not in parsed or parsed.startswith("@") or parsed.endswith("@"):
        raise ValueError(f"{address!r} is not an email address")


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how one client's email goes out (the password stays a SecretStr, so reprs hide it)."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = 15.0


@dataclass(frozen=True)
class Email:
    """One notification: the client it is for, its server, and what it says (plain text)."""

    client: str
    smtp: SmtpConfig
    subject: str
    body: str
    to: tuple[str, ...] = ()  # empty: the client's SMTP_TO
    reply_to: str | None = None
    message_id: str = field(default_factory=lambda: make_msgid(domain="notify.local"))

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to or self.smtp.recipients

    def to_message(self) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = self.message_id
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message.set_content(self.body)
        return message


def is_temporary(error: BaseException) -> bool:
    """Whether trying again later may work: 4xx replies, dropped or refused connections, timeouts."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code < 0 or 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPException):  # no STARTTLS, no usable AUTH method: configuration
        return False
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    return isinstance(error, OSError)  # refused, reset, timed out, TLS handshake cut


def deliver(email: Email, ssl_context: ssl.SSLContext) -> dict[str, tuple[int, bytes]]:
    """Send one email now (blocking); returns the recipients the server refused, if only some were."""
    smtp = email.smtp
    client: smtplib.SMTP
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=ssl_context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        client.ehlo()
        if smtp.security == "starttls":
            client.starttls(context=ssl_context)
            client.ehlo()
        if smtp.username is not None and smtp.password is not None:
            client.login(smtp.username, smtp.password.get_secret_value())
        return client.send_message(email.to_message(), from_addr=smtp.sender, to_addrs=list(email.recipients))


class SmtpMailer:
    """Sends one email now, off the event loop; retrying is the effects outbox's work."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context or ssl.create_default_context()

    async def send(self, email: Email) -> dict[str, tuple[int, bytes]]:
        """Deliver `email`; returns the recipients the server refused when only some were. Raises on failure."""
        return await asyncio.to_thread(deliver, email, self._ssl_context)


def describe_error(error: BaseException, email: Email) -> str:
    """The error in one line, without the SMTP password should a server echo it."""
    text = f"{type(error).__name__}: {error}"
    if email.smtp.password is not None:
        text = text.replace(email.smtp.password.get_secret_value(), "***")
    return text
