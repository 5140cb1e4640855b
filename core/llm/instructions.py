"""How a client tells the model who it is: one prompt, or categories picked by a cheap classifier call."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SinglePrompt:
    """One system prompt (and the client's tools) for every turn."""

    prompt: str

    def system_prompt(self, category: str | None = None) -> str:
        return self.prompt.strip()


@dataclass(frozen=True)
class Category:
    """One kind of conversation: what it is (for the classifier), and how to answer it."""

    name: str
    description: str
    prompt: str
    tools: Sequence[Callable[..., Any]] = ()


@dataclass(frozen=True)
class ClassifiedPrompts:
    """A base prompt plus categories; each turn a classifier call picks the category that answers."""

    base: str
    categories: Sequence[Category]
    default: str
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(category.name for category in self.categories))
        if self.default not in self.names:
            raise ValueError(f"default category {self.default!r} is not one of {self.names}")

    def category(self, name: str) -> Category:
        return next(category for category in self.categories if category.name == name)

    def system_prompt(self, category: str | None = None) -> str:
        chosen = self.category(category or self.default)
        return f"{self.base.strip()}\n\n{chosen.prompt.strip()}"

    def classifier_prompt(self) -> str:
        options = "\n".join(f"- {category.name}: {category.description}" for category in self.categories)
        return (
            "Classify the user's latest messages in this conversation into exactly one category.\n"
            f"Categories:\n{options}\n"
            "Answer with the category name only, nothing else."
        )

    def parse_category(self, answer: str | None) -> str:
        """The category a classifier's answer names; the default when it names none."""
        words = re.findall(r"[a-z0-9_]+", _fold(answer or ""))
        for word in words:
            if word in self.names:
                return word
        return self.default


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


Instructions = SinglePrompt | ClassifiedPrompts
