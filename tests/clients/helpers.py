"""Reading a running app's state through its REST API, for the client tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningApp, TestClientIds
from tests.fakes.openai import FakeOpenAI


def conversation(app: RunningApp, client: TestClientIds, wa_id: str) -> dict[str, Any] | None:
    found = [c for c in app.api(client, "/conversations").json() if c["user_key"] == wa_id]
    return found[0] if found else None


def messages(app: RunningApp, client: TestClientIds, conversation_id: int) -> list[dict[str, Any]]:
    response = app.api(client, f"/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    return response.json()


def settled(app: RunningApp, client: TestClientIds, wa_id: str) -> dict[str, Any] | None:
    """The user's conversation once nothing is due and every message in it is handled, else None."""
    found = conversation(app, client, wa_id)
    if found is None or found["due_at"] is not None:
        return None
    return found if all(m["processed_at"] for m in messages(app, client, found["id"])) else None


def tool_names(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


def tool_results(request: dict[str, Any]) -> list[str]:
    """The tool messages that ended a request's conversation (the results of the previous tool round)."""
    results: list[str] = []
    for message in reversed(request["messages"]):
        if message["role"] != "tool":
            break
        results.insert(0, message["content"])
    return results


def system_prompt(llm: FakeOpenAI, index: int) -> str:
    first = llm.requests[index]["messages"][0]
    assert first["role"] == "system"
    return first["content"]


def flat(text: str) -> str:
    """Text with its line breaks and runs of spaces as single spaces (knowledge paragraphs wrap lines)."""
    return " ".join(text.split())
