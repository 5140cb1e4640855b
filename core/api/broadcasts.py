"""REST for a client's broadcasts: create (202 and an id), read with counts, list, cancel."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from core.api.schemas import _UNSTORABLE
from core.broadcasts.parameters import ParameterError, check_fields, sample
from core.clients import Client
from core.conversation.template_send import TemplateRefused, template_message
from core.errors import NotFound
from core.services import ServicesDep
from core.storage.broadcast_records import Broadcast, BroadcastCounts

log = logging.getLogger("core.api")

BroadcastId = Annotated[int, Path(ge=1, le=2**62)]
MAX_USER_KEYS = 100_000
Value = Annotated[str, Field(max_length=1024)]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Audience(BaseModel):
    """Who gets it: everyone with any of these tags, or these people (wa_id or business-scoped id)."""

    model_config = ConfigDict(extra="forbid")

    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = Field(default=None, min_length=1,
                                                                                  max_length=100)
    user_keys: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=MAX_USER_KEYS)

    @model_validator(mode="after")
    def _one(self) -> Audience:
        if (self.tags is None) == (self.user_keys is None):
            raise ValueError('give exactly one of "tags" or "user_keys"')
        if any(_UNSTORABLE.search(item) for item in [*(self.tags or []), *(self.user_keys or [])]):
            raise ValueError("NUL characters and lone surrogates cannot be stored")
        return self


class BroadcastCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=1, max_length=20)
    parameters: list[Value] | dict[Annotated[str, Field(max_length=200)], Value] = Field(
        default_factory=list, max_length=100, description='values, or "{{contact.name}}", "{{contact.email}}", '
                                                          '"{{contact.user_key}}" filled in per person')
    audience: Audience
    at: Annotated[datetime | None, AfterValidator(lambda v: _utc(v) if v is not None else None)] = Field(
        default=None, description="ISO 8601, when to start (without an offset, UTC); now when not given")
    phone_number_id: str | None = Field(default=None, max_length=64,
                                        description="one of the client's numbers; its first when not given")

    @model_validator(mode="after")
    def _storable(self) -> BroadcastCreate:
        values = list(self.parameters.values()) if isinstance(self.parameters, dict) else list(self.parameters)
        if any(_UNSTORABLE.search(text) for text in values):
            raise ValueError("NUL characters and lone surrogates cannot be sent")
        return self


class Created(BaseModel):
    id: int


class BroadcastRead(BaseModel):
    id: int
    template: str
    language: str
    phone_number_id: str
    parameters: list[str] | dict[str, str]
    audience: dict
    status: str = Field(description="scheduled, running, paused, done, cancelled")
    due_at: datetime | None
    last_error: str | None
    total: int
    created_at: datetime
    finished_at: datetime | None
    counts: dict | None = Field(default=None, description=(
        "recipients by state: queued, sending, sent (accepted, not yet delivered), delivered, read, failed (with "
        "failed_by_code), skipped (opted out), cancelled"))


def broadcast_read(item: Broadcast, counts: BroadcastCounts | None = None) -> BroadcastRead:
    return BroadcastRead(id=item.id, template=item.template, language=item.language,
                         phone_number_id=item.phone_number_id, parameters=item.parameters, audience=item.audience,
                         status=item.status, due_at=item.due_at, last_error=item.last_error, total=item.total,
                         created_at=item.created_at, finished_at=item.finished_at,
                         counts=vars(counts) if counts is not None else None)


class BroadcastRefused(TemplateRefused):
    """A broadcast that cannot be sent as asked (422)."""


def build_broadcasts_router(client: Client) -> APIRouter:
    router = APIRouter()

    @router.post("/broadcasts", status_code=202)
    async def create(services: ServicesDep, body: BroadcastCreate) -> Created:
        """Check the template and parameters, store the broadcast and its recipients; sent in the background."""
        numbers = list(client.settings.phone_number_ids)
        if body.phone_number_id is not None and body.phone_number_id not in numbers:
            raise BroadcastRefused(f"{body.phone_number_id} is not one of {client.env_prefix}PHONE_NUMBER_IDS")
        if not numbers:
            raise BroadcastRefused(f"client {client.name} has no number: set {client.env_prefix}PHONE_NUMBER_IDS")
        try:
            check_fields(body.parameters)
        except ParameterError as error:
            raise BroadcastRefused(str(error)) from None
        # As one conversation's send checks it: known, approved, the parameters fit (with sample contact values).
        await template_message(services.store, client, body.template, body.language, sample(body.parameters))
        now = services.clock.now()
        audience = body.audience.model_dump(exclude_none=True)
        if "tags" in audience:
            audience["tags"] = sorted({tag.strip().lower() for tag in audience["tags"]})
        created = await services.store.create_broadcast(client.name, body.phone_number_id or numbers[0], body.template,
                                                        body.language, body.parameters, audience, body.at or now, now)
        if created is None:
            who = f"no contact has any of the tags {', '.join(audience['tags'])}" if "tags" in audience else \
                "the audience names no one"
            raise BroadcastRefused(f"the broadcast would reach no one: {who}")
        log.info("broadcasts.created", extra={"client": client.name, "broadcast": created.id,
                                              "template": body.template, "recipients": created.total})
        if services.broadcasts is not None:
            services.broadcasts.kick()
        return Created(id=created.id)

    @router.get("/broadcasts")
    async def broadcasts(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                         offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> list[BroadcastRead]:
        """The client's broadcasts, newest first (without counts: GET one for them)."""
        return [broadcast_read(item) for item in await services.store.list_broadcasts(client.name, limit, offset)]

    @router.get("/broadcasts/{broadcast_id}")
    async def broadcast(services: ServicesDep, broadcast_id: BroadcastId) -> BroadcastRead:
        """One broadcast with its recipients counted by state, kept current from status webhooks."""
        found = await services.store.get_broadcast(client.name, broadcast_id)
        if found is None:
            raise NotFound(f"no broadcast {broadcast_id} for client {client.name}")
        return broadcast_read(found, await services.store.broadcast_counts(found.id))

    @router.post("/broadcasts/{broadcast_id}/cancel")
    async def cancel(services: ServicesDep, broadcast_id: BroadcastId) -> BroadcastRead:
        """Stop it: recipients not yet sent to are never sent to (sends in flight finish)."""
        cancelled = await services.store.cancel_broadcast(client.name, broadcast_id, services.clock.now())
        if cancelled is None:
            raise NotFound(f"no broadcast {broadcast_id} for client {client.name}")
        log.info("broadcasts.cancelled", extra={"client": client.name, "broadcast": broadcast_id})
        return broadcast_read(cancelled, await services.store.broadcast_counts(broadcast_id))

    return router
