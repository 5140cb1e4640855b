"""The REST API every client gets under /api/v1/<name>, built once per client and mounted."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from annotated_types import Interval
from pydantic import AfterValidator, BeforeValidator
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from core.api.auth import require_api_key
from core.api.broadcasts import build_broadcasts_router
from core.api.contacts import build_contacts_router
from core.api.schemas import (BotSwitch, ClientHealth, ConversationRead, ConversationUsage, ErasureRead, MessageRead,
                              OperatorMessage, OperatorSend, TemplateRead, TemplateSend, UsageDay, UsageFigures,
                              UsageReport)
from core.clients import Client, ClientRegistry
from core.contacts.erasure import erase_contact
from core.conversation.takeover import send_operator_message, send_operator_rich, set_mode
from core.conversation.template_send import send_template
from core.errors import AppError, NotFound
from core.ops.usage import BadPeriod, Report, usage_report
from core.services import Services, ServicesDep
from core.storage.records import ConversationQuery, Mode

# What SQLite's INTEGER and Postgres's BIGINT hold: beyond it the store overflows (a 500), so FastAPI answers 422.
Int64 = Annotated[int, Interval(ge=-(2**63), le=2**63 - 1)]
Limit = Annotated[Int64, Query(ge=1, le=500)]
Offset = Annotated[Int64, Query(ge=0)]
ConversationId = Annotated[Int64, Path()]
# A wa_id or a business-scoped user id (e.g. US.13491208655302741918), as the conversation list shows it.
UserKey = Annotated[str, Path(min_length=1, max_length=256)]
log = logging.getLogger("core.api")
# "Active": a message written or answered within this long before now (the app's clock).
ACTIVE_WINDOW = timedelta(hours=24)


def _in_utc(value: datetime) -> datetime:
    """A time without an offset is UTC, as every time the API gives; one that leaves the calendar in UTC is refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the years 1 to 9999 in UTC") from None


UtcTime = Annotated[datetime, AfterValidator(_in_utc)]


def _iso_day(value: object) -> object:
    """Only YYYY-MM-DD: a date parser would also take a timestamp or a time, and read it in some zone."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a day as YYYY-MM-DD (days are UTC)")
    return value


UtcDay = Annotated[date, BeforeValidator(_iso_day)]
From = Annotated[UtcDay, Query(alias="from", description="first day, YYYY-MM-DD (UTC), included")]
To = Annotated[UtcDay, Query(alias="to", description="last day, YYYY-MM-DD (UTC), included")]


class UnprocessablePeriod(AppError):
    status_code = 422


def _usage_read(client: Client, report: Report, conversation_id: int | None = None) -> UsageReport:
    """A usage report as the API answers it (each group's figures are the report's dataclass fields)."""
    return UsageReport(
        client=client.name, first=report.first, last=report.last, conversation_id=conversation_id,
        days=[UsageDay(day=day, **vars(item)) for day, item in report.days], totals=UsageFigures(**vars(report.totals)),
        conversations=None if report.conversations is None else
        [ConversationUsage(conversation_id=key, **vars(item)) for key, item in report.conversations])


def add_error_handlers(app: FastAPI) -> None:
    """A mounted app inherits no handlers from its parent, so each app gets them here."""

    async def on_app_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, AppError)
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
        return JSONResponse({"detail": error.message}, status_code=error.status_code, headers=headers)

    async def on_invalid_request(request: Request, error: Exception) -> Response:
        # FastAPI's own 422, written with ASCII escapes: the errors quote the input, and a lone surrogate in it
        # (JSON allows the escape) cannot be encoded as UTF-8, which turned a 422 into a 500.
        assert isinstance(error, RequestValidationError)
        body = json.dumps({"detail": jsonable_encoder(error.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)


def build_client_router(client: Client) -> APIRouter:
    """The shared endpoints, bound to one client; everything behind its API key."""
    router = APIRouter(dependencies=[Depends(require_api_key(client))])

    @router.get("/health")
    async def health(services: ServicesDep) -> ClientHealth:
        return ClientHealth(
            client=client.name, status="ok", send_mode=client.send_mode,
            llm="openai" if services.settings.openai_api_key else "offline",
            phone_number_ids=list(client.settings.phone_number_ids),
        )

    @router.get("/bot")
    async def bot(services: ServicesDep) -> BotSwitch:
        """Whether the bot answers new messages."""
        return BotSwitch(enabled=await services.store.bot_enabled(client.name))

    @router.put("/bot")
    async def switch_bot(services: ServicesDep, body: BotSwitch) -> BotSwitch:
        """Switch the bot on or off for the messages that arrive from now on (nothing earlier is answered later)."""
        enabled = await services.store.set_bot_enabled(client.name, body.enabled, services.clock.now())
        log.info("client.bot_switched", extra={"client": client.name, "enabled": enabled})
        return BotSwitch(enabled=enabled)

    @router.get("/conversations")
    async def conversations(
        services: ServicesDep, limit: Limit = 50, offset: Offset = 0,
        mode: Annotated[Mode | None, Query(description="bot or human")] = None,
        needs_attention: Annotated[bool | None, Query(description="flagged for a person, or not")] = None,
        updated_since: Annotated[UtcTime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=200,
                                       description="in the contact's name, user key or a message's text, any case")] = None,
        active: Annotated[bool | None, Query(description="a message in or out in the last 24 h, or none")] = None,
    ) -> list[ConversationRead]:
        """Active conversations first (a message in or out in the last 24 h), then the most recently updated."""
        query = ConversationQuery(mode=mode, needs_attention=needs_attention, updated_since=updated_since, text=q,
                                  active=active, active_since=services.clock.now() - ACTIVE_WINDOW)
        found = await services.store.list_conversations(client.name, limit, offset, query)
        return [ConversationRead.model_validate(item, from_attributes=True) for item in found]

    @router.get("/conversations/{conversation_id}/messages")
    async def messages(services: ServicesDep, conversation_id: ConversationId, limit: Limit = 200,
                       offset: Offset = 0) -> list[MessageRead]:
        # Scoped by client: another client's conversation is indistinguishable from a missing one.
        if await services.store.get_conversation(client.name, conversation_id) is None:
            raise NotFound(f"no conversation {conversation_id} for client {client.name}")
        found = await services.store.list_messages(conversation_id, limit, offset)
        return [MessageRead.model_validate(item, from_attributes=True) for item in found]

    @router.post("/conversations/{conversation_id}/takeover")
    async def takeover(services: ServicesDep, conversation_id: ConversationId) -> ConversationRead:
        """An operator answers from now on; the bot stays silent until release (or the client's idle time)."""
        return await _switch(services, conversation_id, "human")

    @router.post("/conversations/{conversation_id}/release")
    async def release(services: ServicesDep, conversation_id: ConversationId) -> ConversationRead:
        """The bot answers again (new messages only)."""
        return await _switch(services, conversation_id, "bot")

    @router.post("/conversations/{conversation_id}/resolve")
    async def resolve(services: ServicesDep, conversation_id: ConversationId) -> ConversationRead:
        """A person has looked: clear `needs_attention` and its reason (a later problem flags it again)."""
        conversation = await services.store.resolve(client.name, conversation_id, services.clock.now())
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id} for client {client.name}")
        return ConversationRead.model_validate(conversation, from_attributes=True)

    @router.post("/conversations/{conversation_id}/messages", status_code=201)
    async def operator_message(services: ServicesDep, conversation_id: ConversationId,
                               body: OperatorSend) -> MessageRead:
        """Send an operator's text, or with `type` buttons, a list, an image, a document or a location
        (docs/rich-messages.md); 422 outside the 24 h window or for a field over Meta's limits, 502 when WhatsApp
        refuses."""
        sender, now = services.senders.for_client(client), services.clock.now()
        if isinstance(body, OperatorMessage):
            sent = await send_operator_message(services.store, services.outbox, client, sender, conversation_id,
                                               body.text, now)
        else:
            sent = await send_operator_rich(services.store, services.outbox, client, sender, conversation_id, body, now)
        return MessageRead.model_validate(sent, from_attributes=True)

    @router.get("/usage", response_model_by_alias=True)
    async def usage(services: ServicesDep, first: From, last: To,
                    by: Annotated[Literal["day", "conversation"], Query(
                        description="conversation: also each conversation's figures")] = "day") -> UsageReport:
        """Per UTC day: conversations with a message, messages in and out, model calls, tokens and cost in USD;
        with the totals (the sums over the conversations)."""
        try:
            report = await usage_report(services.store, services.prices, client.name, first, last,
                                        by_conversation=by == "conversation")
        except BadPeriod as error:
            raise UnprocessablePeriod(str(error)) from None
        return _usage_read(client, report)

    @router.get("/conversations/{conversation_id}/usage", response_model_by_alias=True)
    async def conversation_usage(services: ServicesDep, conversation_id: ConversationId, first: From,
                                 last: To) -> UsageReport:
        """The same figures for one conversation."""
        if await services.store.get_conversation(client.name, conversation_id) is None:
            raise NotFound(f"no conversation {conversation_id} for client {client.name}")
        try:
            report = await usage_report(services.store, services.prices, client.name, first, last,
                                        conversation_id=conversation_id)
        except BadPeriod as error:
            raise UnprocessablePeriod(str(error)) from None
        return _usage_read(client, report, conversation_id)
    @router.delete("/contacts/{user_key}")
    async def erase(services: ServicesDep, user_key: UserKey) -> ErasureRead:
        """Erase one person (by wa_id or user id): their conversations, messages, status reports, records, effects
        and archived files with this client. 404 when nothing is kept about them; 502 when the archive fails."""
        archive = services.media_archive
        assert archive is not None  # run_services always gives one
        erased = await erase_contact(services.store, archive, client.name, user_key)
        if erased is None:
            raise NotFound(f"no contact {user_key} for client {client.name}")
        return ErasureRead(conversations=erased.conversations, messages=erased.messages,
                           status_reports=erased.status_reports, records=erased.records, effects=erased.effects,
                           media_files=erased.media_files)

    @router.get("/templates")
    async def templates(services: ServicesDep) -> list[TemplateRead]:
        """The client's WhatsApp templates (synced from Meta) with the parameters each part takes."""
        found = await services.store.list_templates(client.name)
        return [TemplateRead.model_validate({
            "name": t.name, "language": t.language, "category": t.category, "status": t.status, "quality": t.quality,
            "parameter_format": t.parameter_format, "updated_at": t.updated_at,
            "components": [{**part, "parameters": [vars(p) | {"key": p.key} for p in part["parameters"]]}
                           for part in t.outline()]}) for t in found]

    @router.post("/conversations/{conversation_id}/template", status_code=201)
    async def template_message(services: ServicesDep, conversation_id: ConversationId,
                               body: TemplateSend) -> MessageRead:
        """Send an approved template, also outside the 24 h window; 422 names what does not fit the template."""
        sent = await send_template(services.store, services.store, services.outbox, client,
                                   services.senders.for_client(client), conversation_id, body.name, body.language,
                                   body.parameters, services.clock.now())
        return MessageRead.model_validate(sent, from_attributes=True)

    async def _switch(services: Services, conversation_id: int, mode: Mode) -> ConversationRead:
        await set_mode(services.store, client, conversation_id, mode, services.clock.now())
        conversation = await services.store.get_conversation(client.name, conversation_id)
        return ConversationRead.model_validate(conversation, from_attributes=True)

    return router


def _schema_router(app: FastAPI, client: Client) -> APIRouter:
    """GET /openapi.json of a client's app, behind its API key."""
    router = APIRouter(dependencies=[Depends(require_api_key(client))], include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        schema = app.openapi()
        # As FastAPI's own route does: paths are relative to the mount point (/api/v1/<name>).
        root_path = request.scope.get("root_path", "").rstrip("/")
        if root_path and "servers" not in schema:
            schema = {**schema, "servers": [{"url": root_path}]}
        return JSONResponse(schema)

    return router


class ClientApps:
    """The cached factory of client sub-apps: each is built once, however often it is asked for."""

    def __init__(self) -> None:
        self._built: dict[str, FastAPI] = {}

    def get(self, client: Client) -> FastAPI:
        if client.name not in self._built:
            # No docs pages: a browser cannot send the bearer key for them or for the schema they load, and
            # unauthenticated they would tell which clients exist. The schema itself is behind the key.
            app = FastAPI(title=f"{client.name} API", version="1", openapi_url=None, docs_url=None, redoc_url=None)
            add_error_handlers(app)
            app.include_router(build_client_router(client))
            app.include_router(build_contacts_router(client), dependencies=[Depends(require_api_key(client))])
            app.include_router(build_broadcasts_router(client), dependencies=[Depends(require_api_key(client))])
            if client.spec.router is not None:
                app.include_router(client.spec.router, dependencies=[Depends(require_api_key(client))])
            app.include_router(_schema_router(app, client))
            self._built[client.name] = app
        return self._built[client.name]

    def mount_all(self, app: FastAPI, registry: ClientRegistry) -> None:
        for client in registry:
            app.mount(f"/api/v1/{client.name}", self.get(client))
