"""The sandbox's own way in: a number per sandbox client and the secret that signs deliveries to it.

`python -m core chat` talks to a client through the real webhook path without Meta: it signs deliveries to the
client's sandbox number with this secret. Only clients in sandbox mode have such a number, and only deliveries
signed with the sandbox secret reach it, so a live deployment is not opened by it."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from core.kept_secret import kept_secret, read_kept_secret

SANDBOX_NUMBER_PREFIX = "sandbox-"
# Beside the default SQLite file, so that a server and `python -m core chat` started in one folder share it.
SECRET_FILE = Path("data/sandbox_secret")


def sandbox_number(client: str) -> str:
    """The phone_number_id of a sandbox client's chat: never a Meta id (those are digits)."""
    return f"{SANDBOX_NUMBER_PREFIX}{client}"


def is_sandbox_number(phone_number_id: str | None) -> bool:
    return bool(phone_number_id) and phone_number_id.startswith(SANDBOX_NUMBER_PREFIX)  # type: ignore[union-attr]


def sandbox_secret(settings: Settings, file: Path = SECRET_FILE) -> str:
    """SANDBOX_SECRET, else the random secret kept in data/sandbox_secret (made on first use, owner-only)."""
    return kept_secret(settings.sandbox_secret, file)


def read_sandbox_secret(file: Path = SECRET_FILE) -> str | None:
    """The secret a local server made, if there is one."""
    return read_kept_secret(file)
