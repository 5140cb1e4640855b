"""Stored messages as the Chat Completions `messages` list, faithful to what happened and within a token budget."""

from __future__ import annotations

from typing import Any

from core.storage.records import NewMessage, StoredMessage

# Rough but provider-independent: about 4 characters a token, plus a few tokens of framing per message.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    text = content if isinstance(content, str) else str(content or "")
    calls = str(message.get("tool_calls") or "")
    return TOKENS_PER_MESSAGE + (len(text) + len(calls)) // CHARS_PER_TOKEN


def chat_message(message: StoredMessage | NewMessage, image: str | None = None) -> dict[str, Any] | None:
    """One stored message in the model's format; None for what the model need not see."""
    payload = message.payload or {}
    if message.role == "user":
        if image:
            return {"role": "user", "content": [{"type": "text", "text": message.text or ""},
                                                {"type": "image_url", "image_url": {"url": image}}]}
        return {"role": "user", "content": message.text or ""}
    if message.role == "assistant" and payload.get("beside_tool_calls"):
        return None  # sent as its own message, but the model wrote it with its tool calls: that step holds it
    if message.role == "assistant" and payload.get("tool_calls"):
        # The text a model wrote alongside its tool calls is part of what it said: keep it.
        return {"role": "assistant", "content": message.text, "tool_calls": payload["tool_calls"]}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.text or ""}
    if message.role == "operator":
        return {"role": "assistant", "content": f"[a person from the team wrote] {message.text or ''}"}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": payload.get("tool_call_id", ""), "content": message.text or ""}
    return None


def chat_messages(history: list[StoredMessage], batch: list[StoredMessage], *, budget: int,
                  images: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The batch (always) after as much recent history as fits in `budget` tokens.

    A window that would start with tool results (their call cut off) starts after them instead."""
    images = images or {}
    current = [chat_message(message, images.get(message.id)) for message in batch]
    past = [item for item in map(chat_message, history) if item is not None]
    spent = sum(estimate_tokens(item) for item in current if item)
    start = len(past)
    while start > 0 and spent + estimate_tokens(past[start - 1]) <= budget:
        start -= 1
        spent += estimate_tokens(past[start])
    while start < len(past) and past[start]["role"] == "tool":
        start += 1
    return [*past[start:], *(item for item in current if item)]
