"""The conversation page's 24 h window and template picker (pure functions and one store read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.conversation.window import WINDOW, is_within_window
from core.storage.base import TemplateStore
from core.storage.records import Conversation
from core.whatsapp.templates import APPROVED, Template


@dataclass(frozen=True)
class Window:
    """Whether a free-form message can reach the person now, and until when."""

    open: bool
    closes_at: datetime | None

    def left(self, now: datetime) -> str:
        """What is left of an open window, e.g. "3 h 20 min"."""
        if not self.open or self.closes_at is None:
            return ""
        minutes = max(0, int((self.closes_at - now) / timedelta(minutes=1)))
        return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def window_of(conversation: Conversation, now: datetime) -> Window:
    last = conversation.last_inbound_at
    return Window(is_within_window(last, now), last + WINDOW if last is not None else None)


def choice_of(template: Template) -> str:
    """The picker's value for a template: name and language (a name may exist in several languages)."""
    return f"{template.name}|{template.language}"


def parse_choice(value: str) -> tuple[str, str]:
    name, _, language = value.partition("|")
    return name, language


async def approved_templates(store: TemplateStore, client: str) -> list[Template]:
    return [template for template in await store.list_templates(client) if template.status == APPROVED]
