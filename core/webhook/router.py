"""GET /webhook (Meta's verification handshake) and POST /webhook (deliveries)."""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Callable
from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
import orjson
from starlette import routing
from starlette.types import Receive, Scope, Send

from core.clients import Route
from core.metrics import UNROUTED
from core.services import Services, ServicesDep
from core.storage.base import StoreUnavailable
from core.webhook.changes import take_change
from core.webhook.events import (Event, InboundMessage, Malformed, MalformedDelivery, OtherChange, StatusUpdate,
                                 delivery_object, needs_cleaning, parse_events)
from core.webhook.signature import matching_secret

log = logging.getLogger("core.webhook")

router = APIRouter()


def add_routes(app: FastAPI) -> None:
    """POST /webhook first of all the app's routes, so no other is tried before it; GET /webhook beside it."""
    app.router.routes.insert(0, routing.Route("/webhook", receive, methods=["POST"], name="receive_webhook"))
    app.include_router(router)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@router.get("/webhook", response_class=PlainTextResponse)
async def verify(
    services: ServicesDep,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """Echo the challenge when the verify token is the global one or any client's."""
    tokens = set(services.registry.verify_tokens())
    if services.settings.whatsapp_verify_token:
        tokens.add(services.settings.whatsapp_verify_token.get_secret_value())
    known = token is not None and any(hmac.compare_digest(token.encode(), t.encode()) for t in tokens)
    if mode != "subscribe" or not known:
        log.warning("webhook.verification_refused", extra={"mode": mode})
        return PlainTextResponse("verification refused: wrong hub.mode or hub.verify_token", status_code=403)
    if not challenge:
        return PlainTextResponse("hub.challenge is missing", status_code=400)
    return PlainTextResponse(challenge)


async def receive(request: Request) -> Response:
    """POST /webhook: verify, store and acknowledge; no LLM or Graph API call happens before the 200.

    Called by `serve` ahead of the middleware stack (BotApp), and routed as a plain Starlette route (add_routes):
    FastAPI's request handling costs more CPU than the rest of an acknowledgement outside the store."""
    started = perf_counter()
    services: Services = request.state.services
    limit = services.settings.webhook_max_body_bytes
    body = await _read_limited(request, limit)
    if body is None:
        return _problem(413, f"body larger than {limit} bytes")
    secrets = _accepted_secrets(services)
    header = request.headers.get("x-hub-signature-256")
    sandbox = (services.sandbox_secret,) if services.sandbox_secret else ()
    signer = matching_secret(body, header, (*secrets, *sandbox)) if header else None
    if signer is None and (secrets or not services.settings.allow_unsigned_webhooks):
        reason = "X-Hub-Signature-256 is missing" if not header else "X-Hub-Signature-256 does not match"
        if not secrets:
            reason += " (no app secret is configured: set META_APP_SECRET or <NAME>_APP_SECRET)"
        log.warning("webhook.bad_signature", extra={"detail": reason})
        return _problem(401, reason)
    try:
        document = _document(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than any real payload
        return _problem(400, "body is not JSON")
    if not isinstance(document, dict):
        return _problem(400, "body is not a JSON object")
    try:
        kind = delivery_object(document)
        if kind != "whatsapp_business_account":
            log.warning("webhook.unexpected_object", extra={"object": kind})
            _acknowledged(services, UNROUTED, started)
            return JSONResponse({"status": "ignored"})
        routed = _route(services, parse_events(document, clean=needs_cleaning(body)))
    except MalformedDelivery as error:
        return _problem(400, f"not a webhook payload: {error.where} is malformed")
    for event, route in routed:
        if route.sandbox and (signer is None or signer != services.sandbox_secret):
            log.warning("webhook.bad_sandbox_signature", extra={"client": route.client.name if route.client else None})
            return _problem(401, "deliveries to a sandbox number must be signed with the sandbox secret")
        if not route.sandbox and signer is not None and route.client is not None and route.client.app_secret != signer:
            log.warning("webhook.cross_client_signature", extra={"client": route.client.name, "waba_id": event.waba_id})
            return _problem(401, "X-Hub-Signature-256 was not made with the app secret of the client it names")
    try:
        stored, client = await _take_in(services, routed)
    except StoreUnavailable:
        log.exception("webhook.store_unavailable")
        return _problem(503, "storage unavailable; the delivery was not recorded, retry later")
    except Exception:
        # Never a 500: Meta retries a 503, and what was stored before the failure is deduplicated on wamid.
        log.exception("webhook.failed", extra={"events": len(routed)})
        return _problem(503, "the delivery could not be recorded; retry later")
    _acknowledged(services, client, started)
    # Written out rather than through JSONResponse's json.dumps: always this shape, and ~2 us less a delivery.
    return Response(b'{"status":"ok","stored":%d}' % stored, media_type="application/json")


async def serve(scope: Scope, receive_message: Receive, send: Send) -> None:
    """POST /webhook as an ASGI app of its own, for BotApp to call ahead of the middleware stack.

    Starlette's error and exception middleware, FastAPI's exit stack and the router cost about as much CPU as the
    handler's own work outside the store, and it uses none of them; what they would do for an error is here."""
    try:
        response = await receive(Request(scope, receive_message, send))
    except Exception:  # receive answers every failure it knows; this is the one it does not (never a 500)
        log.exception("webhook.failed")
        response = _problem(503, "the delivery could not be recorded; retry later")
    await response(scope, receive_message, send)


def _acknowledged(services: Services, client: str, started: float) -> None:
    """Count a 200 and its latency under the delivery's client (its first routed event's)."""
    if services.metrics is not None:
        services.metrics.acknowledged(client, perf_counter() - started)


def _not_a_number(name: str) -> float:
    """NaN and Infinity: Python's json reads them, no store keeps them, and JSON has no such numbers."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A float, refused when it has no finite value (1e999): Postgres would refuse it after the 200."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond a float")
    return value


# NaN, Infinity and 1e999 refused; one decoder for every delivery (json.loads with hooks builds one per call).
_READER = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite_float)


def _document(body: bytes) -> Any:
    """The delivery's JSON; NaN, Infinity and 1e999 refused (ValueError)."""
    try:
        return orjson.loads(body)  # strict: refuses what _READER refuses, ~4x faster on Meta's deliveries
    except orjson.JSONDecodeError:
        # What orjson reads only strictly: UTF-16/32 or a BOM, lone surrogates (cleaned later), ints past 64 bits.
        # As json.loads reads bytes (UTF-8/16/32, surrogatepass), with one decoder rather than one per call.
        return _READER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _accepted_secrets(services: Services) -> frozenset[str]:
    secrets = services.registry.app_secrets()
    if services.settings.meta_app_secret:
        return secrets | {services.settings.meta_app_secret.get_secret_value()}
    return secrets


def _resync(services: Services) -> Callable[[str], None]:
    """Ask for a client's templates to be synced again (in the background: the webhook never calls the Graph API)."""
    sync = services.templates
    return sync.kick if sync is not None else (lambda client: None)


def _route(services: Services, events: list[Event]) -> list[tuple[Event, Route]]:
    routed: list[tuple[Event, Route]] = []
    for event in events:
        route = services.registry.route(event.waba_id, event.phone_number_id)
        if route.client is None:
            # Meta retries non-2xx for days, so an unknown tenant is acknowledged, logged and left alone.
            log.warning("webhook.unrouted", extra={"reason": route.reason, "waba_id": event.waba_id,
                                                   "phone_number_id": event.phone_number_id})
        routed.append((event, route))
    return routed


async def _take_in(services: Services, routed: list[tuple[Event, Route]]) -> tuple[int, str]:
    """Store what the delivery carries; returns how many messages were new and the client it is counted under."""
    stored = 0
    counted = UNROUTED
    earliest_due = None
    now = services.clock.now()
    # A line per message or status is DEBUG: at INFO, formatting and writing it cost about as much CPU as the rest
    # of the acknowledgement outside the store, and a broadcast's statuses come by the ten thousand.
    each = log.isEnabledFor(logging.DEBUG)
    for event, route in routed:
        client = route.client
        if client is None:
            continue
        if counted is UNROUTED:
            counted = client.name
        if isinstance(event, InboundMessage):
            result = await services.store.record_inbound(client.name, event, client.debounce, now)
            stored += result.is_new
            if result.is_new and result.due_at is not None:
                earliest_due = min(earliest_due or result.due_at, result.due_at)
            if each:
                log.debug("webhook.message" if result.is_new else "webhook.duplicate",
                          extra={"client": client.name, "waba_id": event.waba_id, "wamid": event.wamid,
                                 "conversation": result.conversation_id, "type": event.type})
        elif isinstance(event, StatusUpdate):
            known = await services.store.record_status(client.name, event, now)
            if event.errors:  # a reply that did not reach the person: an operator wants to see it at INFO
                log.info("webhook.status", extra={"client": client.name, "waba_id": event.waba_id, "wamid": event.wamid,
                                                  "status": event.status, "known": known, "errors": event.errors})
            elif each:
                log.debug("webhook.status", extra={"client": client.name, "waba_id": event.waba_id,
                                                   "wamid": event.wamid, "status": event.status, "known": known})
        elif isinstance(event, OtherChange):  # template news, Business-app echoes, account updates
            await take_change(services.store, client, event, now, _resync(services))
        elif isinstance(event, Malformed):
            log.warning("webhook.malformed", extra={"client": client.name, "waba_id": event.waba_id,
                                                    "field": event.field, "detail": event.detail})
    if earliest_due is not None:
        services.scheduler.nudge(earliest_due)
    return stored, counted
