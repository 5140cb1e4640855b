"""The console's pages under /console: login, a client's inbox, a conversation and its operator actions."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.clock import Clock, SystemClock
from core.config import Settings
from core.console.admin_routes import add_admin_routes
from core.console.contact_routes import add_contact_routes
from core.console.dashboard_routes import add_dashboard_routes
from core.console.i18n import LANGUAGES
from core.console.media_routes import add_media_routes
from core.console.pages import Pages
from core.console.passwords import check_password_async
from core.console.playground_routes import add_playground_routes
from core.console.session import LoginLimiter, Session, SessionCookies
from core.console.view import ACTIVE_WINDOW, STATE_LABELS, bubbles, inbox_item
from core.console.window_view import approved_templates, choice_of, parse_choice, window_of
from core.conversation.takeover import send_operator_message, set_mode
from core.conversation.template_send import send_template
from core.errors import AppError
from core.services import Services, ServicesDep
from core.storage.records import ConversationQuery

log = logging.getLogger("core.console")
HERE = FilePath(__file__).parent
PAGE_SIZE = 50
MESSAGES_SHOWN = 500
# A live connection ends after this long and the browser's EventSource reconnects: a server shutting down waits for
# open responses, and Heroku's router closes a response that sends nothing for 55 s.
STREAM_SECONDS = 50.0
HEARTBEAT_SECONDS = 15.0
Filter = Literal["all", "attention", "human"]
Action = Literal["takeover", "release", "resolve", "reply"]
ClientName = Annotated[str, Path(max_length=64)]
ConversationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def add_console(app: FastAPI, settings: Settings, clock: Clock | None = None) -> None:
    """Serve the console's pages and its static files under /console."""
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(build_console_router(settings, clock or SystemClock()), prefix="/console",
                       include_in_schema=False)


def build_console_router(settings: Settings, clock: Clock) -> APIRouter:
    router = APIRouter()
    templates = Jinja2Templates(directory=HERE / "templates")
    cookies = SessionCookies(settings, clock)
    pages = Pages(templates, cookies)
    for add_routes in (add_playground_routes, add_dashboard_routes, add_admin_routes, add_media_routes,
                       add_contact_routes):
        add_routes(router, pages)
    page, refuse, to_login, visible = pages.page, pages.refuse, pages.to_login, pages.visible

    @router.get("")
    @router.get("/")
    async def home(request: Request, services: ServicesDep) -> Response:
        session = await cookies.read(request, services.store)
        if session is None:
            return to_login()
        names = pages.clients_of(services, session)
        if not names:
            return refuse(request, session, 404, "This account's client is not served here.")
        return RedirectResponse(f"/console/c/{names[0]}", status_code=303)

    def login_page(request: Request, error: str | None, email: str, status_code: int = 200) -> Response:
        token = cookies.login_token(request)
        response = page(request, "login.html", {"session": None, "error": error, "email": email, "csrf": token},
                        status_code)
        cookies.keep_login_token(request, response, token)
        return response

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return login_page(request, None, "")

    @router.post("/login")
    async def login(request: Request, services: ServicesDep, email: Annotated[str, Form(max_length=320)] = "",
                    password: Annotated[str, Form(max_length=1024)] = "",
                    csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
        email = email.strip().lower()
        ip = request.client.host if request.client else "unknown"
        now = services.clock.now()
        limiter = LoginLimiter(services.store, services.settings)

        def again(error: str, status_code: int) -> Response:
            return login_page(request, error, email, status_code)

        if not cookies.login_token_ok(request, csrf):
            return again("The form expired; please log in again.", 403)
        if await limiter.blocked(email, ip, now):
            log.warning("console.login_limited", extra={"email": email, "ip": ip})
            return again("Too many failed logins: wait a few minutes and try again.", 429)
        user = await services.store.find_console_user(email) if email else None
        if not await check_password_async(user.password_hash if user else None, password) or user is None \
                or user.disabled:
            await limiter.failed(email, ip, now)
            log.info("console.login_failed", extra={"email": email, "ip": ip})
            return again("Wrong email or password.", 401)
        await limiter.succeeded(email)
        log.info("console.login", extra={"email": email, "role": user.role, "client": user.client or "*"})
        response = RedirectResponse("/console", status_code=303)
        cookies.start(response, request, user, await services.store.console_language(user.id))
        return response

    @router.post("/logout")
    async def logout(request: Request, services: ServicesDep,
                     csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
        session = await cookies.read(request, services.store)
        if session is not None and not session.csrf_ok(csrf):
            return refuse(request, session, 403, "The form expired; reload the page and try again.")
        response = to_login()
        cookies.end(response)
        return response

    @router.post("/language")
    async def choose_language(request: Request, services: ServicesDep,
                              csrf: Annotated[str, Form(max_length=200)] = "",
                              language: Annotated[str, Form(max_length=8)] = "") -> Response:
        """The account's language: stored (every later login uses it) and in a new session cookie at once."""
        session = await cookies.read(request, services.store)
        if session is None:
            return to_login()
        if not session.csrf_ok(csrf):
            return refuse(request, session, 403, "The form expired; reload the page and try again.")
        if language not in LANGUAGES:
            return refuse(request, session, 422, f"No language {language!r}: choose one of {', '.join(LANGUAGES)}.")
        await services.store.set_console_language(session.user.id, language, services.clock.now())
        back = urlsplit(request.headers.get("referer", ""))
        # Back to the page it was chosen on, when that is a console page of this site.
        path = back.path if back.path.startswith("/console") and not back.path.startswith("/console/static") \
            and back.netloc in ("", request.url.netloc) else "/console"
        response = RedirectResponse(path + (f"?{back.query}" if back.query and path == back.path else ""),
                                    status_code=303)
        cookies.start(response, request, session.user, language)
        return response

    @router.get("/c/{client_name}")
    async def inbox(request: Request, services: ServicesDep, client_name: ClientName,
                    filter: Filter = "all", q: Annotated[str, Query(max_length=200)] = "",
                    page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
                    fragment: bool = False) -> Response:
        admitted = await pages.admit(request, services, client_name)
        if not isinstance(admitted, tuple):
            return admitted
        session, client = admitted
        now = services.clock.now()
        query = ConversationQuery(needs_attention=True if filter == "attention" else None,
                                  mode="human" if filter == "human" else None, text=q.strip() or None,
                                  active_since=now - ACTIVE_WINDOW)
        found = await services.store.list_conversations(client.name, PAGE_SIZE + 1, (page_number - 1) * PAGE_SIZE,
                                                        query)
        items = [inbox_item(conversation, now) for conversation in found[:PAGE_SIZE]]
        unread = await services.store.unread_counts(session.user.id, [item.conversation.id for item in items])
        tags = await services.store.tags_of(client.name, [item.conversation.user_key for item in items])
        base = {"filter": filter, "q": q}
        context = {
            "session": session, "client": client.name, "clients": pages.clients_of(services, session), "items": items,
            "filter": filter, "q": q, "page": page_number, "labels": STATE_LABELS, "unread": unread, "tags": tags,
            "previous": f"?{urlencode({**base, 'page': page_number - 1})}" if page_number > 1 else None,
            "next": f"?{urlencode({**base, 'page': page_number + 1})}" if len(found) > PAGE_SIZE else None,
        }
        return page(request, "_inbox_list.html" if fragment else "inbox.html", context)

    @router.get("/c/{client_name}/conversations/{conversation_id}")
    async def conversation(request: Request, services: ServicesDep, client_name: ClientName,
                           conversation_id: ConversationId, fragment: bool = False,
                           template: Annotated[str, Query(max_length=600)] = "") -> Response:
        session = await cookies.read(request, services.store)
        if session is None:
            return to_login()
        return await _conversation_page(request, services, session, client_name, conversation_id,
                                        "_messages.html" if fragment else "conversation.html", chosen=template)

    async def _conversation_page(request: Request, services: Services, session: Session, client_name: str,
                                 conversation_id: int, template: str, error: str | None = None,
                                 status_code: int = 200, chosen: str = "") -> Response:
        client = visible(services, session, client_name)
        found = await services.store.get_conversation(client.name, conversation_id) if client else None
        if client is None or found is None:
            return refuse(request, session, 404, "No such conversation.")
        messages = await services.store.list_messages(conversation_id, MESSAGES_SHOWN, 0)
        # Seen up to the newest message in shown (not "now": one stored meanwhile was not shown, so stays unread).
        newest_in = max((m.created_at for m in messages if m.direction == "in"), default=None)
        if newest_in is not None:
            await services.store.mark_seen(session.user.id, conversation_id, newest_in)
        admin = session.user.role == "admin"
        now = services.clock.now()
        approved = await approved_templates(services.store, client.name) \
            if session.user.can_act and template == "conversation.html" else []
        context = {"session": session, "client": client.name, "clients": pages.clients_of(services, session),
                   "item": inbox_item(found, now), "bubbles": bubbles(messages, internal=admin),
                   "admin": admin, "can_act": session.user.can_act, "error": error,
                   "window": window_of(found, now), "now": now, "templates": approved, "choice_of": choice_of,
                   "chosen": next((t for t in approved if choice_of(t) == chosen), None),
                   "contact": await services.store.get_contact(client.name, found.user_key)}
        return page(request, template, context, status_code)

    @router.post("/c/{client_name}/conversations/{conversation_id}/template")
    async def template_send(request: Request, services: ServicesDep, client_name: ClientName,
                            conversation_id: ConversationId) -> Response:
        """Send an approved template (also outside the 24 h window): `template` is name|language, `p.<key>` each
        parameter's value. Registered before `act`, whose {action} would otherwise take the path."""
        form = await request.form(max_fields=100, max_files=0)
        admitted = await pages.admit_action(request, services, client_name, conversation_id,
                                            str(form.get("csrf") or ""))
        if isinstance(admitted, Response):
            return admitted
        session, client, _ = admitted
        chosen = str(form.get("template") or "")
        name, language = parse_choice(chosen)
        # An empty field is a missing parameter (WhatsApp refuses empty ones): the refusal names it.
        values = {key.removeprefix("p."): str(value)[:1024] for key, value in form.items()
                  if key.startswith("p.") and str(value).strip()}
        try:
            if any("\x00" in value for value in values.values()):
                raise _Refused("A parameter holds a NUL character, which WhatsApp does not take.")
            await send_template(services.store, services.store, services.outbox, client,
                                services.senders.for_client(client), conversation_id, name, language, values,
                                services.clock.now())
        except AppError as error:
            return await _conversation_page(request, services, session, client.name, conversation_id,
                                            "conversation.html", error.message, error.status_code, chosen=chosen)
        log.info("console.action", extra={"client": client.name, "conversation": conversation_id,
                                          "action": "template", "template": name, "email": session.user.email})
        return RedirectResponse(f"/console/c/{client.name}/conversations/{conversation_id}", status_code=303)

    @router.post("/c/{client_name}/conversations/{conversation_id}/{action}")
    async def act(request: Request, services: ServicesDep, client_name: ClientName, conversation_id: ConversationId,
                  action: Action, csrf: Annotated[str, Form(max_length=200)] = "",
                  text: Annotated[str, Form(max_length=4096)] = "") -> Response:
        admitted = await pages.admit_action(request, services, client_name, conversation_id, csrf)
        if isinstance(admitted, Response):
            return admitted
        session, client, _ = admitted
        now = services.clock.now()
        try:
            if action == "takeover" or action == "release":
                await set_mode(services.store, client, conversation_id, "human" if action == "takeover" else "bot", now)
            elif action == "resolve":
                await services.store.resolve(client.name, conversation_id, now)
            else:
                if not text.strip():
                    raise _Refused("Write something to send.")
                await send_operator_message(services.store, services.outbox, client, services.senders.for_client(client),
                                            conversation_id, text.strip(), now)
        except AppError as error:
            return await _conversation_page(request, services, session, client.name, conversation_id,
                                            "conversation.html", error.message, error.status_code)
        log.info("console.action", extra={"client": client.name, "conversation": conversation_id, "action": action,
                                          "email": session.user.email})
        return RedirectResponse(f"/console/c/{client.name}/conversations/{conversation_id}", status_code=303)

    @router.get("/c/{client_name}/events")
    async def events(request: Request, services: ServicesDep, client_name: ClientName) -> Response:
        """Server-sent events: `changed` with the ids of the client's conversations updated since the last one."""
        session = await cookies.read(request, services.store)
        if session is None:
            return Response(status_code=401)
        client = visible(services, session, client_name)
        if client is None:
            return Response(status_code=404)
        stream = _changes(request, services, client.name)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router


class _Refused(AppError):
    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)


async def _changes(request: Request, services: Services, client: str) -> AsyncIterator[str]:
    """Polls the store every CONSOLE_POLL_SECONDS, holding a database connection only for that one short read
    (a notice in this process would miss webhooks another process or dyno received)."""
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    since = services.clock.now()
    seen: dict[int, object] = {}
    yield f"retry: {int(services.settings.console_poll_seconds * 1000)}\n\n"
    while loop.time() - started < STREAM_SECONDS and not await request.is_disconnected():
        await asyncio.sleep(services.settings.console_poll_seconds)
        try:
            changed = await services.store.list_conversations(client, 100, 0, ConversationQuery(updated_since=since))
        except Exception as error:  # the store down: the page keeps what it shows, the browser reconnects later
            log.warning("console.live_failed", extra={"client": client, "error": type(error).__name__})
            return
        fresh = [item.id for item in changed if seen.get(item.id) != item.updated_at]
        seen = {item.id: item.updated_at for item in changed}
        if fresh:
            since = max(item.updated_at for item in changed)
            last_sent = loop.time()
            yield f"event: changed\ndata: {json.dumps(fresh)}\n\n"
        elif loop.time() - last_sent > HEARTBEAT_SECONDS:
            last_sent = loop.time()
            yield ": still here\n\n"
