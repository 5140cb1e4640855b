"""The admin page's rows: each client's numbers, modes, last error and health, from its settings and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clients import Client
from core.console.view import failure_reason
from core.llm.instructions import ClassifiedPrompts
from core.sandbox import sandbox_number
from core.storage.admin_records import ClientFacts

# A batch due this long ago and not answered: no worker is taking conversations (or it is far behind).
OVERDUE_AFTER = timedelta(minutes=2)
# Failures counted over this period.
RECENT = timedelta(hours=24)


@dataclass(frozen=True)
class ClientRow:
    name: str
    numbers: list[str]
    waba_ids: list[str]
    send_mode: str
    llm: str
    bot_enabled: bool | None  # None: the store did not answer
    health: str  # ok, check, unknown
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    last_error: str | None = None
    last_error_at: datetime | None = None


def send_failure(error: dict[str, Any] | None) -> str:
    """A refused send in one line: our stored Graph error's code and message (its title is often only the type)."""
    if error and error.get("message") and "errors" not in error:
        return f"({error['code']}) {error['message']}" if error.get("code") else str(error["message"])
    return failure_reason(error)


def llm_mode(client: Client, has_key: bool) -> str:
    if not has_key:
        return "offline responder (no OPENAI_API_KEY)"
    if isinstance(client.spec.instructions, ClassifiedPrompts):
        return f"{client.model}, classifier {client.classifier_model}"
    return client.model


def client_row(client: Client, has_key: bool, bot_enabled: bool | None, facts: ClientFacts | None,
               warnings: list[str]) -> ClientRow:
    """One client's row; `facts` None when the store did not answer."""
    numbers = list(client.settings.phone_number_ids)
    if client.send_mode == "sandbox":
        numbers.append(sandbox_number(client.name))
    base = {"name": client.name, "numbers": numbers, "waba_ids": list(client.waba_ids), "send_mode": client.send_mode,
            "llm": llm_mode(client, has_key), "bot_enabled": bot_enabled}
    if facts is None:
        return ClientRow(**base, health="unknown", problems=["the store did not answer"])  # type: ignore[arg-type]
    problems = list(warnings)
    if facts.overdue:
        problems.append(f"{facts.overdue} conversation(s) waiting past their time: is a worker running?")
    if facts.failed_sends:
        problems.append(f"{facts.failed_sends} message(s) WhatsApp refused in the last 24 h")
    if facts.failed_effects:
        problems.append(f"{facts.failed_effects} email(s) or other effects given up in the last 24 h")
    notes = []
    if bot_enabled is False:
        notes.append("bot switched off")
    if facts.attention:
        notes.append(f"{facts.attention} conversation(s) need attention")
    last, at = None, None
    if facts.last_send_failure_at is not None:
        last, at = f"send refused: {send_failure(facts.last_send_failure)}", facts.last_send_failure_at
    if facts.last_effect_failure_at is not None and (at is None or facts.last_effect_failure_at > at):
        last, at = f"effect failed: {facts.last_effect_failure}", facts.last_effect_failure_at
    return ClientRow(**base, health="check" if problems else "ok", problems=problems,  # type: ignore[arg-type]
                     notes=notes, last_error=last, last_error_at=at)
