"""The contact of a conversation, edited from its page: add or remove a tag, write the note (operators and admins)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from core.api.contacts import ContactPatch, contact_change
from core.console.pages import Pages
from core.services import ServicesDep

log = logging.getLogger("core.console")
ClientName = Annotated[str, Path(max_length=64)]
ConversationId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Edit = Literal["tag-add", "tag-remove", "notes"]


def add_contact_routes(router: APIRouter, pages: Pages) -> None:
    """POST …/conversations/<id>/contact: one edit of the conversation's person, checked as the REST PATCH is.
    Registered before the conversation's `{action}` route, which would otherwise take the path."""

    @router.post("/c/{client_name}/conversations/{conversation_id}/contact")
    async def edit_contact(request: Request, services: ServicesDep, client_name: ClientName,
                           conversation_id: ConversationId, csrf: Annotated[str, Form(max_length=200)] = "",
                           edit: Annotated[Edit | None, Form()] = None,
                           tag: Annotated[str, Form(max_length=200)] = "",
                           notes: Annotated[str, Form(max_length=20_000)] = "") -> Response:
        admitted = await pages.admit_action(request, services, client_name, conversation_id, csrf)
        if isinstance(admitted, Response):
            return admitted
        session, client, found = admitted
        if edit is None:
            return pages.refuse(request, session, 422, "Say what to change: edit=tag-add, tag-remove or notes.")
        contact = await services.store.get_contact(client.name, found.user_key)
        tags = list(contact.tags) if contact else []
        try:
            if edit == "notes":
                # An emptied note is no note: stored as null, as the REST PATCH's null clears it.
                patch = ContactPatch(notes=notes.replace("\r\n", "\n").strip() or None)
            elif edit == "tag-add":
                patch = ContactPatch(tags=[*tags, tag])
            else:
                patch = ContactPatch(tags=[kept for kept in tags if kept != tag.strip().lower()])
        except ValidationError as error:
            return pages.refuse(request, session, 422, _reason(error))
        # Tags are replaced as a list: two operators adding at the same instant may lose one (the last write wins).
        updated = await services.store.update_contact(client.name, found.user_key, contact_change(patch),
                                                      services.clock.now())
        if updated is None:  # the person's conversations were erased meanwhile
            return pages.refuse(request, session, 404, "No such conversation.")
        log.info("console.contact_edited", extra={"client": client.name, "conversation": conversation_id,
                                                  "edit": edit, "email": session.user.email})
        return RedirectResponse(f"/console/c/{client.name}/conversations/{conversation_id}", status_code=303)


def _reason(error: ValidationError) -> str:
    """The REST PATCH's reasons in one line: which field, and why."""
    return "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors())
