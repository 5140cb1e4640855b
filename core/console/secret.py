"""The key that signs console sessions: CONSOLE_SECRET, else a random one kept owner-only in data/console_secret.

Every web process of a machine must sign with the same key (a cookie one gunicorn worker signed is read by the
others), and a restart must not log everyone out, so a key made per process would not do; the file, made once with
an exclusive link as core/sandbox.py does, is shared by the processes of one machine. Several machines (Heroku
dynos, whose files do not survive a restart either) need CONSOLE_SECRET."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.config import Settings

SECRET_FILE = Path("data/console_secret")


def console_secret(settings: Settings, file: Path = SECRET_FILE) -> str:
    """CONSOLE_SECRET, else the secret in `file` (made on first use, readable by its owner only)."""
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value()
    existing = _read(file)
    if existing:
        return existing
    file.parent.mkdir(parents=True, exist_ok=True)
    draft = file.with_name(f".{file.name}.{os.getpid()}")
    draft.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    draft.chmod(0o600)
    try:
        os.link(draft, file)  # atomic and exclusive: workers starting at once agree on one secret
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read(file) or ""


def _read(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
