"""The admin page (/console/admin): every client with its numbers, modes, last error and health; admins only."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.console.admin import OVERDUE_AFTER, RECENT, ClientRow, client_row
from core.console.pages import Pages
from core.services import Services, ServicesDep
from core.storage.base import StoreUnavailable

log = logging.getLogger("core.console")


def add_admin_routes(router: APIRouter, pages: Pages) -> None:

    @router.get("/admin")
    async def admin(request: Request, services: ServicesDep) -> Response:
        session = await pages.cookies.read(request, services.store)
        if session is None:
            return pages.to_login()
        if session.user.role != "admin":
            return pages.refuse(request, session, 403, "The admin page is for the platform's admins.")
        rows = [await _row(services, client.name) for client in services.registry]
        return pages.page(request, "admin.html", {"session": session, "client": None, "rows": rows,
                                                  "clients": pages.clients_of(services, session),
                                                  "section": "admin"})


async def _row(services: Services, name: str) -> ClientRow:
    from core.app import deployment_warnings  # core.app builds the console: imported when first asked

    client = services.registry.get(name)
    assert client is not None
    warnings = [w.text for w in deployment_warnings(services.settings, services.registry)
                if name in w.clients.split(",")]
    now = services.clock.now()
    try:
        enabled = await services.store.bot_enabled(name)
        facts = await services.store.client_facts(name, now - RECENT, now - OVERDUE_AFTER)
    except StoreUnavailable as error:
        log.warning("console.admin_store_unavailable", extra={"client": name, "error": type(error).__name__})
        enabled, facts = None, None
    return client_row(client, bool(services.settings.openai_api_key), enabled, facts, warnings)
