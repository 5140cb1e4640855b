"""What the per-client REST API answers with."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag, model_validator

from core.whatsapp.rich import DocumentMessage, ImageMessage, ListMessage, LocationMessage, ReplyButtons, kind_of

# What neither database keeps in a text (JSON can still carry it as an escape).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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

    type: Literal["text"] = "text"
    text: str = Field(min_length=1, max_length=4096)


# What POST …/messages takes: a text ({"text"}, `type` optional) or a rich kind named by `type` (docs/rich-messages.md).
OperatorSend = Annotated[
    Annotated[OperatorMessage, Tag("text")] | Annotated[ReplyButtons, Tag("buttons")]
    | Annotated[ListMessage, Tag("list")] | Annotated[ImageMessage, Tag("image")]
    | Annotated[DocumentMessage, Tag("document")] | Annotated[LocationMessage, Tag("location")],
    Discriminator(kind_of),
]


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
class TemplateParameterRead(BaseModel):
    key: str = Field(description="addresses it in `parameters` as an object: header.1, body.first_name, button0.1")
    name: str
    kind: str = Field(description="text, image, video, document (a link or media id) or coupon_code")
    example: str | None


class TemplatePartRead(BaseModel):
    type: str = Field(description="header, body, footer or button")
    format: str | None = None
    text: str | None = None
    index: int | None = None
    sub_type: str | None = None
    parameters: list[TemplateParameterRead]


class TemplateRead(BaseModel):
    name: str
    language: str
    category: str
    status: str
    quality: str | None
    parameter_format: str
    components: list[TemplatePartRead]
    updated_at: datetime | None


class TemplateSend(BaseModel):
    """An approved template to send: values in the listed order, or by parameter name (or key)."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=1, max_length=20)
    parameters: (list[Annotated[str, Field(max_length=1024)]]
                 | dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=1024)]]) = \
        Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _storable(self) -> TemplateSend:
        # Neither database keeps NUL or a lone surrogate (JSON allows both escapes): refused here, not a 500 later.
        values = list(self.parameters.items() if isinstance(self.parameters, dict) else enumerate(self.parameters))
        texts = [self.name, self.language, *(str(k) for k, _ in values), *(v for _, v in values)]
        if any(_UNSTORABLE.search(text) for text in texts):
            raise ValueError("NUL characters and lone surrogates cannot be sent")
        return self
