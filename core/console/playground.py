"""The playground: staff talk to a client's bot as a WhatsApp user would, through the real webhook on the client's
sandbox number, and try an edited system prompt beside the saved one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from core.llm.instructions import ClassifiedPrompts, Instructions
from core.storage.records import StoredMessage
from core.webhook.signature import sign

USER_KEY_PREFIX = "playground-"


class PlaygroundRefused(Exception):
    """The webhook did not take the playground's message; the text says why."""


@dataclass(frozen=True)
class Lanes:
    """A tester's two conversations on the sandbox number: one answered by the saved prompt, one by the edited."""

    saved: str
    edited: str


def lanes_of(user_id: int) -> Lanes:
    """The user keys of one console account's playground conversations (never a WhatsApp id: those are digits)."""
    return Lanes(f"{USER_KEY_PREFIX}{user_id}", f"{USER_KEY_PREFIX}{user_id}-edited")


def editable_prompt(instructions: Instructions) -> str:
    """What the playground lets one edit: the whole prompt, or the base of a classified client's prompts."""
    return (instructions.base if isinstance(instructions, ClassifiedPrompts) else instructions.prompt).strip()


def delivery(phone_number_id: str, user_key: str, name: str, text: str, now: datetime) -> dict[str, Any]:
    """A `messages` webhook as Meta sends it, from `user_key` to the sandbox number."""
    return {"object": "whatsapp_business_account", "entry": [{"id": "sandbox", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone_number_id, "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": user_key}],
            "messages": [{"from": user_key, "id": f"wamid.playground.{uuid.uuid4().hex}",
                          "timestamp": str(int(now.timestamp())), "type": "text", "text": {"body": text}}]}}]}]}


async def post_to_webhook(app: ASGIApp, state: Mapping[str, Any], secret: str, body: dict[str, Any]) -> None:
    """POST the delivery to this app's own /webhook, in process, signed with the sandbox secret: the same checks,
    storage and debounce as Meta's deliveries, with no network hop (a dyno need not know its public address)."""
    raw = json.dumps(body).encode()

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        # The server copies the lifespan's state (the services) into each request; an in-process call must too.
        await app({**scope, "state": dict(state)}, receive, send)

    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, raw)}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=with_state), base_url="http://playground") as http:
        response = await http.post("/webhook", content=raw, headers=headers)
    if response.status_code != 200:
        raise PlaygroundRefused(f"the webhook answered {response.status_code}: {response.text[:200]}")


@dataclass
class Exchange:
    """What the tester wrote, and what the bot did and answered to it."""

    said: list[StoredMessage] = field(default_factory=list)
    steps: list[StoredMessage] = field(default_factory=list)
    replies: list[StoredMessage] = field(default_factory=list)

    @property
    def tool_calls(self) -> list[str]:
        calls = []
        for step in self.steps:
            for call in (step.payload or {}).get("tool_calls", []) if step.type == "tool_calls" else []:
                function = call.get("function") or {}
                calls.append(f"{function.get('name', '?')}({function.get('arguments', '')})")
        return calls

    @property
    def category(self) -> str | None:
        return next((reply.category for reply in self.replies if reply.category), None)

    @property
    def tokens(self) -> tuple[int, int]:
        shown = [*self.steps, *self.replies]
        return sum(m.prompt_tokens for m in shown), sum(m.completion_tokens for m in shown)

    @property
    def seconds(self) -> float | None:
        """From the last message written to the first reply stored (the debounce wait included)."""
        if not self.said or not self.replies:
            return None
        return max(0.0, (self.replies[0].created_at - self.said[-1].created_at).total_seconds())


def exchanges(messages: list[StoredMessage]) -> list[Exchange]:
    """The conversation as exchanges: each run of messages in, then the steps and replies that followed it."""
    found: list[Exchange] = []
    for message in messages:
        if message.direction == "in":
            if not found or found[-1].steps or found[-1].replies:
                found.append(Exchange())
            found[-1].said.append(message)
            continue
        if not found:
            found.append(Exchange())
        if message.direction == "out":
            found[-1].replies.append(message)
        else:
            found[-1].steps.append(message)
    return found
