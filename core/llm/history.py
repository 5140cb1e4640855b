"""Stored messages as the Chat Completions `messages` list, faithful to what happened."""

from __future__ import annotations

from typing import Any

from core.storage.records import NewMessage, StoredMessage


def chat_message(message: StoredMessage | NewMessage) -> dict[str, Any] | None:
    """One stored message in the model's format; None for what the model need not see."""
    payload = message.payload or {}
    if message.role == "user":
        return {"role": "user", "content": message.text or ""}
    if message.role == "assistant" and payload.get("tool_calls"):
        # The text a model wrote alongside its tool calls is part of what it said: keep it.
        return {"role": "assistant", "content": message.text, "tool_calls": payload["tool_calls"]}
    if message.role in {"assistant", "operator"}:
        return {"role": "assistant", "content": message.text or ""}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": payload.get("tool_call_id", ""), "content": message.text or ""}
    return None


def chat_messages(history: list[StoredMessage], batch: list[StoredMessage]) -> list[dict[str, Any]]:
    """History then the new batch; a cut-off tool exchange at the start of the window is dropped whole."""
    converted = [item for item in map(chat_message, [*history, *batch]) if item is not None]
    start = 0
    while start < len(converted) and converted[start]["role"] == "tool":
        start += 1
    return converted[start:]
