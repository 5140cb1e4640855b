"""Opt-out keywords: a message that is exactly one of the client's keywords takes the person off broadcasts."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from core.storage.records import StoredMessage


def folded(text: str) -> str:
    """Text compared without case, accents or surrounding spaces ("  BAJÁ " is "baja")."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def is_opt_out(text: str | None, keywords: Iterable[str]) -> bool:
    """Whether the whole message is one of the keywords."""
    return text is not None and folded(text) in {folded(keyword) for keyword in keywords}


def opts_out(batch: Sequence[StoredMessage], keywords: Iterable[str]) -> bool:
    """Whether a batch holds a text message that is an opt-out keyword."""
    wanted = list(keywords)
    return any(message.type == "text" and is_opt_out(message.text, wanted) for message in batch)
