"""Bounds on one turn: how much one person's messages can make the service do, whatever the model or the person.

Each bound that is hit is logged and kept on the conversation as an internal note (role system, type `limit`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TurnBounds:
    """Limits of one turn (settings MAX_*; see .env.example)."""

    tool_calls_per_round: int = 5
    tool_calls_per_turn: int = 12
    batch_messages: int = 40
    images: int = 4
    reply_characters: int = 6000
    records_per_conversation_per_day: int = 3


def cut_reply(reply: str, limit: int) -> tuple[str, bool]:
    """The reply within `limit` characters (cut at a paragraph, sentence or word where it can); True when cut."""
    if len(reply) <= limit:
        return reply, False
    head = reply[:limit - 1]
    for mark in ("\n\n", ". ", "\n", " "):
        at = head.rfind(mark)
        if at > limit // 2:
            head = head[:at + (1 if mark == ". " else 0)]
            break
    return head.rstrip() + "…", True
