"""Fixtures of the client tests: a real SMTP server (aiosmtpd) on 127.0.0.1 that staff emails reach."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.core.notify.smtp_server import Mailbox, smtp_server


@dataclass(frozen=True)
class Smtp:
    mailbox: Mailbox
    port: int

    def env(self, client: str, to: str) -> dict[str, str]:
        """The client's SMTP variables pointing at this server (plain SMTP, no login)."""
        prefix = client.upper() + "_"
        return {prefix + "SMTP_HOST": "127.0.0.1", prefix + "SMTP_PORT": str(self.port),
                prefix + "SMTP_SECURITY": "none", prefix + "SMTP_FROM": f"bot@{client}.test", prefix + "SMTP_TO": to}


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        yield Smtp(mailbox, port)
