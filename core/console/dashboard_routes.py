"""The client dashboard (/console/c/<client>/dashboard): today's and 30 days' figures, and the bot's switch."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from core.console.dashboard import periods
from core.console.pages import Pages
from core.services import ServicesDep

log = logging.getLogger("core.console")
ClientName = Annotated[str, Path(max_length=64)]


def add_dashboard_routes(router: APIRouter, pages: Pages) -> None:
    """GET shows the figures to every role; POST …/bot switches the bot (operators and admins)."""

    @router.get("/c/{client_name}/dashboard")
    async def dashboard(request: Request, services: ServicesDep, client_name: ClientName) -> Response:
        admitted = await pages.admit(request, services, client_name)
        if not isinstance(admitted, tuple):
            return admitted
        session, client = admitted
        context = {"session": session, "client": client.name, "clients": pages.clients_of(services, session),
                   "section": "dashboard", "can_act": session.user.can_act,
                   "periods": await periods(services.store, services.prices, client, services.clock.now()),
                   "bot_enabled": await services.store.bot_enabled(client.name)}
        return pages.page(request, "dashboard.html", context)

    @router.post("/c/{client_name}/bot")
    async def switch(request: Request, services: ServicesDep, client_name: ClientName,
                     csrf: Annotated[str, Form(max_length=200)] = "",
                     enabled: Annotated[bool | None, Form()] = None) -> Response:
        admitted = await pages.admit(request, services, client_name,
                                     csrf=csrf, acting="This account can read the dashboard but not switch the bot.")
        if not isinstance(admitted, tuple):
            return admitted
        session, client = admitted
        if enabled is None:
            return pages.refuse(request, session, 422, "Say whether the bot is to be on or off (enabled=true|false).")
        stored = await services.store.set_bot_enabled(client.name, enabled, services.clock.now())
        log.info("client.bot_switched", extra={"client": client.name, "enabled": stored, "email": session.user.email})
        return RedirectResponse(f"/console/c/{client.name}/dashboard", status_code=303)
