"""Received files for the console (/console/c/<client>/media/<message id>): from the media archive, to that
client's staff only, never from Meta's expiring URLs."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from core.console.pages import Pages
from core.services import ServicesDep

log = logging.getLogger("core.console")
ClientName = Annotated[str, Path(max_length=64)]
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# Shown in the page (an <img>, a player, a PDF viewer); anything else is offered as a download.
INLINE = ("image/", "audio/", "video/", "application/pdf", "text/plain")


def add_media_routes(router: APIRouter, pages: Pages) -> None:

    @router.get("/c/{client_name}/media/{message_id}")
    async def media(request: Request, services: ServicesDep, client_name: ClientName, message_id: MessageId) -> Response:
        session = await pages.cookies.read(request, services.store)
        if session is None:
            return Response("Log in to see this file.", status_code=401, media_type="text/plain")
        client = pages.visible(services, session, client_name)
        message = await services.store.get_message(message_id) if client is not None else None
        # The message must be in one of this client's conversations: another client's id is "no such file".
        owned = client is not None and message is not None and \
            await services.store.get_conversation(client.name, message.conversation_id) is not None
        if not owned or message is None or not message.media_path or services.media_archive is None:
            return Response("No such file.", status_code=404, media_type="text/plain")
        fields = {"client": client_name, "conversation": message.conversation_id, "message": message_id}
        try:
            found = await services.media_archive.read(message.media_path)
        except Exception as error:  # the archive (Supabase Storage) down or refusing: the page shows the rest
            log.warning("console.media_unavailable", extra={**fields, "archive": services.media_archive.name,
                                                            "error": f"{type(error).__name__}: {error}"[:300]})
            return Response("The media archive did not answer; try again later.", status_code=503,
                            media_type="text/plain")
        if found is None:
            return Response("The file is no longer kept (retention or erasure).", status_code=404,
                            media_type="text/plain")
        content, content_type = found
        disposition = "inline" if content_type.startswith(INLINE) else "attachment"
        return Response(content, media_type=content_type, headers={
            "Content-Disposition": disposition, "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            # A file is never a page of ours: no script, no forms, even if a browser were to render it.
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"})
