"""Secrets a local deployment makes for itself: random, made once, kept owner-only in a file under data/.

Every process of one machine must agree on the secret (workers starting at once, a server and `python -m core chat`
started in one folder), and a restart must keep it; several machines need the setting instead."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr


def kept_secret(configured: SecretStr | None, file: Path) -> str:
    """The configured secret, else the one in `file` (made on first use, readable by its owner only)."""
    if configured is not None:
        return configured.get_secret_value()
    existing = read_kept_secret(file)
    if existing:
        return existing
    file.parent.mkdir(parents=True, exist_ok=True)
    draft = file.with_name(f".{file.name}.{os.getpid()}")
    draft.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    draft.chmod(0o600)
    try:
        os.link(draft, file)  # atomic and exclusive: processes starting at once agree on one secret
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return read_kept_secret(file) or ""


def read_kept_secret(file: Path) -> str | None:
    """The secret in `file`, if a process made one."""
    try:
        return file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
