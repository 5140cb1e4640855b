"""How a client tells the model who it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SinglePrompt:
    """One system prompt for every turn."""

    prompt: str

    def system_prompt(self) -> str:
        return self.prompt.strip()


Instructions = SinglePrompt
