"""What retention and erasure read from the store and report back: plain records, no SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ExpiredMessage:
    """A message past its client's retention that still holds content; (created_at, id) is the purge's cursor."""

    id: int
    created_at: datetime
    media_path: str | None


@dataclass(frozen=True, slots=True)
class ContactData:
    """Where one person's data with one client lives: their conversations and the files archived from them."""

    conversation_ids: tuple[int, ...] = ()
    media_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing one person removed from the store (rows per table) and where their files were."""

    conversation_ids: tuple[int, ...] = ()
    media_paths: tuple[str, ...] = ()
    messages: int = 0
    status_reports: int = 0
    records: int = 0
    effects: int = 0
    anonymised: dict[str, int] = field(default_factory=dict)

    @property
    def conversations(self) -> int:
        return len(self.conversation_ids)
