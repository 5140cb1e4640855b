"""Knowledge search for the model (a tool any client may list) and for the offline responder."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.knowledge.base import Passage, Retriever
from core.llm.tools import ToolContext, ToolError

log = logging.getLogger("core.knowledge")

NOTHING_FOUND = ("Nothing in the knowledge base matches this query. Do not make up an answer: say you do not "
                 "have that information and offer that a person will answer.")


async def search_knowledge(query: str, *, ctx: ToolContext) -> str:
    """Search this business's knowledge base (products, prices, shipping, payment, hours, policies, FAQs).

    Use it before answering any question about the business; answer only from the passages it returns.
    Write `query` as a short search phrase in the user's language, with the key words of the question.
    """
    try:
        passages = await ctx.search_knowledge(query)
    except ToolError:
        raise
    except Exception as error:
        log.exception("knowledge.search_failed", extra={"client": ctx.client, "conversation": ctx.conversation_id})
        raise ToolError("the knowledge base cannot be searched right now; say so and offer that a person "
                        "will answer") from error
    return format_passages(passages) if passages else NOTHING_FOUND


def format_passages(passages: Sequence[Passage]) -> str:
    """Passages as the model reads them: a numbered heading with the source, then the text."""
    parts = []
    for number, passage in enumerate(passages, start=1):
        where = f"{passage.title} ({passage.source})" if passage.title else passage.source
        parts.append(f"[{number}] {where}\n{passage.text}")
    return "\n\n".join(parts)


async def best_answer(retriever: Retriever, client: str, text: str, *, min_score: float | None = None) -> str | None:
    """The best passage's text when its score reaches the threshold (the retriever's by default), else None.

    For the offline responder: a failing search is logged and treated as no answer.
    """
    threshold = retriever.min_score if min_score is None else min_score
    try:
        passages = await retriever.search(client, text, 1)
    except Exception:
        log.exception("knowledge.search_failed", extra={"client": client, "backend": retriever.name})
        return None
    if passages and passages[0].score >= threshold:
        return passages[0].text
    return None
