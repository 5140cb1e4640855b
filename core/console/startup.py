"""What the console says when a server starts: how to log in, while nobody can."""

from __future__ import annotations

import logging

from core.config import Settings
from core.storage.base import ConsoleStore, StoreUnavailable

log = logging.getLogger("core.console")


async def say_how_to_log_in(store: ConsoleStore, settings: Settings) -> None:
    """With no console account yet, a log line with the command that makes one (there is no default password)."""
    try:
        if await store.count_console_users():
            return
    except StoreUnavailable:
        return  # the store's own errors are logged where it is used; the console can wait
    log.warning("console.no_accounts", extra={"detail": (
        "nobody can log in to the console yet: create an account with "
        "`python -m core user add you@example.com --role admin` (it prints a password), "
        f"then open http://127.0.0.1:{settings.port}/console")})
