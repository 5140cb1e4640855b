"""What the per-client REST API answers with."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class ConversationRead(BaseModel):
    id: int
    phone_number_id: str
    user_key: str
    wa_id: str | None
    user_id: str | None
    contact_name: str | None
    mode: str
    due_at: datetime | None
    last_inbound_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    updated_at: datetime
    human_since: datetime | None
    last_operator_at: datetime | None
    needs_attention: bool
    attention_reason: str | None


class MessageRead(BaseModel):
    id: int
    wamid: str | None
    direction: str
    role: str
    type: str
    text: str | None
    payload: dict[str, Any] | None
    status: str | None
    error: dict[str, Any] | None
    wa_timestamp: datetime | None
    batch_id: str | None
    category: str | None
    media_path: str | None
    processed_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime


class ClientHealth(BaseModel):
    client: str
    status: str
    send_mode: str
    llm: str
    phone_number_ids: list[str]


class OperatorMessage(BaseModel):
    """A text an operator sends to the user through WhatsApp."""

    text: str = Field(min_length=1, max_length=4096)


class BotSwitch(BaseModel):
    """The client's bot on or off: off, new messages wait for a person (flagged) instead of being answered."""

    enabled: StrictBool


class UsageFigures(BaseModel):
    """What a client's bots did and spent in a period (days in UTC); `cost_usd` is null when a model in it has
    no price (`unpriced_models` names them: add them to MODEL_PRICES)."""

    conversations: int
    messages_in: int
    messages_out: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    unpriced_models: list[str] = []


class UsageDay(UsageFigures):
    day: date


class ConversationUsage(UsageFigures):
    conversation_id: int | None  # null: the conversations of people whose data was erased


class UsageReport(BaseModel):
    """Usage from `from` to `to` (UTC days, both included): each day, the totals, and (by=conversation) each
    conversation."""

    model_config = ConfigDict(populate_by_name=True)

    client: str
    timezone: str = "UTC"
    first: date = Field(serialization_alias="from")
    last: date = Field(serialization_alias="to")
    conversation_id: int | None = None
    days: list[UsageDay]
    totals: UsageFigures
    conversations: list[ConversationUsage] | None = None
class ErasureRead(BaseModel):
    """What erasing one person removed: rows per kind and archived files (other clients' copies are untouched)."""

    conversations: int
    messages: int
    status_reports: int
    records: int
    effects: int
    media_files: int
