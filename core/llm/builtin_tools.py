"""Tools core offers every client; a client lists the ones it wants in its ClientSpec."""

from __future__ import annotations

from core.knowledge.tool import search_knowledge
from core.llm.tools import ToolContext


async def hand_over_to_person(reason: str, *, ctx: ToolContext) -> str:
    """Hand the conversation to a person of the team, who will answer in this same chat.

    Use it when the user asks for a person, is upset, or needs something you cannot do or do not know.
    Give the reason in a few words. After calling it, tell the user that a person will answer soon.
    """
    ctx.hand_over(reason.strip() or "the user asked for a person")
    return "Done: once you send your reply, a person of the team takes over this conversation and is notified."


__all__ = ["hand_over_to_person", "search_knowledge"]
