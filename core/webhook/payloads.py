"""Meta's webhook payloads as tolerant pydantic models: unknown fields and types are kept, never refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Tolerant(BaseModel):
    # Meta adds fields without notice; keep them (extra="allow") so nothing is lost from `payload`.
    # Empty defaults are factories: a mutable default ([], {}, a model) is deep-copied on every validation.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class GraphErrorData(_Tolerant):
    details: str | None = None


class GraphError(_Tolerant):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    error_data: GraphErrorData | None = None
    href: str | None = None


class Metadata(_Tolerant):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class Profile(_Tolerant):
    name: str | None = None
    username: str | None = None


class Contact(_Tolerant):
    wa_id: str | None = None
    user_id: str | None = None
    profile: Profile | None = None


class Text(_Tolerant):
    body: str = ""


class Media(_Tolerant):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None
    url: str | None = None


class Location(_Tolerant):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ReplyChoice(_Tolerant):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class Interactive(_Tolerant):
    type: str | None = None
    button_reply: ReplyChoice | None = None
    list_reply: ReplyChoice | None = None
    nfm_reply: dict[str, Any] | None = None


class Button(_Tolerant):
    payload: str | None = None
    text: str | None = None


class Reaction(_Tolerant):
    message_id: str | None = None
    emoji: str | None = None


class ProductItem(_Tolerant):
    product_retailer_id: str | None = None
    quantity: int | float | str | None = None
    item_price: float | str | None = None
    currency: str | None = None


class Order(_Tolerant):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[ProductItem] = Field(default_factory=list)


class System(_Tolerant):
    body: str | None = None
    type: str | None = None
    wa_id: str | None = None
    new_wa_id: str | None = None
    user_id: str | None = None


class Referral(_Tolerant):
    source_url: str | None = None
    source_type: str | None = None
    source_id: str | None = None
    headline: str | None = None
    body: str | None = None
    ctwa_clid: str | None = None


class Context(_Tolerant):
    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None


class Message(_Tolerant):
    id: str = Field(min_length=1)  # the wamid keys idempotency: an empty one cannot be stored
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    timestamp: str | None = None
    type: str = "unknown"
    context: Context | None = None
    text: Text | None = None
    image: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None
    contacts: list[dict[str, Any]] | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    reaction: Reaction | None = None
    order: Order | None = None
    system: System | None = None
    referral: Referral | None = None
    errors: list[GraphError] = Field(default_factory=list)


class Pricing(_Tolerant):
    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class StatusConversation(_Tolerant):
    id: str | None = None
    expiration_timestamp: str | None = None
    origin: dict[str, Any] | None = None


class Status(_Tolerant):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    timestamp: str | None = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    conversation: StatusConversation | None = None
    pricing: Pricing | None = None
    errors: list[GraphError] = Field(default_factory=list)


class MessagesValue(_Tolerant):
    """The `value` of a change whose field is `messages`."""

    messaging_product: str | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    statuses: list[Status] = Field(default_factory=list)
    errors: list[GraphError] = Field(default_factory=list)
