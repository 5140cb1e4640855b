"""What every console page does the same way: render with safe headers, refuse, send to login, check the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from core.clients import Client
from core.console.i18n import Translator, negotiate
from core.console.session import Session, SessionCookies
from core.services import Services
from core.storage.records import Conversation


@dataclass(frozen=True)
class Pages:
    templates: Jinja2Templates
    cookies: SessionCookies

    def page(self, request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        response = self.templates.TemplateResponse(request, name, with_language(request, context),
                                                   status_code=status_code)
        # Pages show private conversations: never from a shared cache, never inside another site's frame.
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        return response

    def refuse(self, request: Request, session: Session | None, status_code: int, reason: str) -> HTMLResponse:
        return self.page(request, "error.html", {"session": session, "status": status_code, "reason": reason},
                         status_code)

    async def admit(self, request: Request, services: Services, client_name: str, *, csrf: str | None = None,
                    acting: str | None = None) -> tuple[Session, Client] | Response:
        """The session and the client it may see, or the answer refusing them: the login page without a session, 404
        for a client it may not see, 403 for an expired form (`csrf` given) or, given `acting` (the reason), a viewer."""
        session = await self.cookies.read(request, services.store)
        if session is None:
            return self.to_login()
        client = self.visible(services, session, client_name)
        if client is None:
            return self.refuse(request, session, 404, f"No client {client_name} here.")
        if csrf is not None and not session.csrf_ok(csrf):
            return self.refuse(request, session, 403, "The form expired; reload the page and try again.")
        if acting is not None and not session.user.can_act:
            return self.refuse(request, session, 403, acting)
        return session, client

    async def admit_action(self, request: Request, services: Services, client_name: str, conversation_id: int,
                           csrf: str) -> tuple[Session, Client, Conversation] | Response:
        """An operator's action on a conversation: the session, client and conversation, or the refusal (login; 404
        for a conversation it may not see or that does not exist; 403 for an expired form or a viewer)."""
        session = await self.cookies.read(request, services.store)
        if session is None:
            return self.to_login()
        client = self.visible(services, session, client_name)
        found = await services.store.get_conversation(client.name, conversation_id) if client else None
        if client is None or found is None:
            return self.refuse(request, session, 404, "No such conversation.")
        if not session.csrf_ok(csrf):
            return self.refuse(request, session, 403, "The form expired; reload the page and try again.")
        if not session.user.can_act:
            return self.refuse(request, session, 403, "This account can read conversations but not act on them.")
        return session, client, found

    @staticmethod
    def to_login() -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303)

    @staticmethod
    def visible(services: Services, session: Session, name: str) -> Client | None:
        """The client when this account may see it; None is answered 404, as for a client that does not exist."""
        client = services.registry.get(name)
        return client if client is not None and session.user.sees(name) else None

    @staticmethod
    def clients_of(services: Services, session: Session) -> list[str]:
        return [client.name for client in services.registry if session.user.sees(client.name)]


def with_language(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    """The context with `_`, the translator of the account's language or else the browser's."""
    session: Session | None = context.get("session")
    lang = negotiate(request.headers.get("accept-language"), session.language if session else None)
    return {**context, "_": Translator(lang)}
