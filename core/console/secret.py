"""The key that signs console sessions: CONSOLE_SECRET, else a random one kept owner-only in data/console_secret.

Every web process of a machine must sign with the same key (a cookie one gunicorn worker signed is read by the
others), and a restart must not log everyone out, so a key made per process would not do; the file, made once with
an exclusive link (core/kept_secret.py), is shared by the processes of one machine. Several machines (Heroku
dynos, whose files do not survive a restart either) need CONSOLE_SECRET."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from core.kept_secret import kept_secret

SECRET_FILE = Path("data/console_secret")


def console_secret(settings: Settings, file: Path = SECRET_FILE) -> str:
    """CONSOLE_SECRET, else the secret in `file` (made on first use, readable by its owner only)."""
    return kept_secret(settings.console_secret, file)
