"""The playground's page (/console/c/<client>/playground): send as a WhatsApp user, read the bot's answers."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from core.clients import Client
from core.console.pages import Pages
from core.console.playground import PlaygroundRefused, delivery, editable_prompt, exchanges, lanes_of, post_to_webhook
from core.console.session import Session
from core.sandbox import sandbox_number
from core.services import Services, ServicesDep
from core.storage.base import StoreUnavailable

log = logging.getLogger("core.console")
MESSAGES_SHOWN = 500
ClientName = Annotated[str, Path(max_length=64)]


def add_playground_routes(router: APIRouter, pages: Pages) -> None:
    """GET shows the tester's two conversations (saved and edited prompt); POST sends one message to them."""

    @router.get("/c/{client_name}/playground")
    async def playground(request: Request, services: ServicesDep, client_name: ClientName,
                         fragment: bool = False) -> Response:
        admitted = await pages.admit(request, services, client_name,
                                     acting="The playground is for operators and admins.")
        if not isinstance(admitted, tuple):
            return admitted
        session, client = admitted
        return await _page(request, pages, services, session, client, "_playground.html" if fragment
                           else "playground.html")

    @router.post("/c/{client_name}/playground")
    async def send(request: Request, services: ServicesDep, client_name: ClientName,
                   csrf: Annotated[str, Form(max_length=200)] = "",
                   text: Annotated[str, Form(max_length=4096)] = "",
                   prompt: Annotated[str, Form(max_length=50_000)] = "") -> Response:
        admitted = await pages.admit(request, services, client_name,
                                     csrf=csrf, acting="The playground is for operators and admins.")
        if not isinstance(admitted, tuple):
            return admitted
        session, client = admitted
        secret = services.sandbox_secret
        if client.send_mode != "sandbox" or secret is None:
            return await _page(request, pages, services, session, client, "playground.html",
                               "This client is live: the playground only talks to clients in sandbox mode.", 409)
        said, edited = text.strip(), _clean(prompt)
        if not said or "\x00" in said:
            return await _page(request, pages, services, session, client, "playground.html",
                               "Write a message to send (text, no NUL characters).", 422)
        lanes = lanes_of(session.user.id)
        now = services.clock.now()
        trying = bool(edited) and edited != editable_prompt(client.spec.instructions)
        name = f"Playground ({session.user.email})"
        try:
            if trying:
                # Stored before the delivery: the turn that answers it reads the prompt under trial.
                await services.store.set_playground_prompt(client.name, lanes.edited, edited, now)
            await post_to_webhook(request.app, request.scope.get("state") or {}, secret,
                                  delivery(sandbox_number(client.name), lanes.saved, name, said, now))
            if trying:
                await post_to_webhook(request.app, request.scope.get("state") or {}, secret,
                                      delivery(sandbox_number(client.name), lanes.edited, f"{name} · edited", said, now))
        except (PlaygroundRefused, StoreUnavailable) as error:
            log.warning("console.playground_failed", extra={"client": client.name, "email": session.user.email,
                                                            "error": str(error)[:300]})
            return await _page(request, pages, services, session, client, "playground.html",
                               "The message was not taken: try again in a moment.", 503)
        log.info("console.playground_sent", extra={"client": client.name, "email": session.user.email,
                                                   "edited_prompt": trying})
        return RedirectResponse(f"/console/c/{client.name}/playground", status_code=303)


async def _page(request: Request, pages: Pages, services: Services, session: Session, client: Client, template: str,
                error: str | None = None, status_code: int = 200) -> Response:
    sandbox = client.send_mode == "sandbox" and services.sandbox_secret is not None
    lanes = lanes_of(session.user.id)
    saved = edited = []
    trial = None
    if sandbox:
        number = sandbox_number(client.name)
        saved = await _exchanges(services, client.name, number, lanes.saved)
        edited = await _exchanges(services, client.name, number, lanes.edited)
        trial = await services.store.playground_prompt(client.name, lanes.edited)
    context = {"session": session, "client": client.name, "clients": pages.clients_of(services, session),
               "sandbox": sandbox, "saved": saved, "edited": edited, "error": error, "section": "playground",
               "prompt": trial or editable_prompt(client.spec.instructions),
               "llm": "openai" if services.settings.openai_api_key else "offline"}
    return pages.page(request, template, context, status_code)


async def _exchanges(services: Services, client: str, number: str, user_key: str) -> list:
    conversation = await services.store.find_conversation(client, number, user_key)
    if conversation is None:
        return []
    return exchanges(await services.store.list_messages(conversation.id, MESSAGES_SHOWN, 0))


def _clean(prompt: str) -> str:
    # Browsers send textarea line ends as CRLF; the prompt compared with the saved one must not differ by those.
    return prompt.replace("\r\n", "\n").replace("\x00", "").strip()
