"""Received media made durable and readable: archived, voice notes transcribed, images passed as image input."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field, replace

from core.clients import Client
from core.llm.transcription import Transcriber
from core.storage.base import TurnStore
from core.storage.media import MediaArchive
from core.storage.records import StoredMessage
from core.whatsapp.client import Media, WhatsAppSender
from core.whatsapp.errors import WhatsAppError

log = logging.getLogger("core.media")

MEDIA_TYPES = frozenset({"audio", "image", "video", "document", "sticker"})


@dataclass(frozen=True)
class ReadBatch:
    """The batch with texts updated, and image inputs (data URLs) by message id."""

    messages: list[StoredMessage]
    images: dict[int, str] = field(default_factory=dict)


class MediaReader:
    """Downloads each received file once; any failure degrades to a note in the text, never a failed turn."""

    def __init__(self, store: TurnStore, transcriber: Transcriber | None, max_bytes: int,
                 archive: MediaArchive | None = None) -> None:
        self._store = store
        self._transcriber = transcriber
        self._max_bytes = max_bytes
        self._archive = archive

    async def read(self, client: Client, sender: WhatsAppSender, batch: list[StoredMessage]) -> ReadBatch:
        messages: list[StoredMessage] = []
        images: dict[int, str] = {}
        for message in batch:
            info = (message.payload or {}).get(message.type) if message.type in MEDIA_TYPES else None
            media_id = info.get("id") if isinstance(info, dict) else None
            if not media_id or client.send_mode == "sandbox":  # the sandbox has no token to download with
                messages.append(await self._without_file(message))
                continue
            fields = {"client": client.name, "conversation": message.conversation_id, "wamid": message.wamid}
            try:
                media = await sender.download_media(media_id, client.access_token, self._max_bytes)
            except WhatsAppError as error:
                log.warning("media.download_failed", extra={**fields, "error": str(error)})
                messages.append(await self._note(message, "could not be downloaded"))
                continue
            await self._keep(client, message, media, fields)
            if message.type == "audio":
                message = await self._transcribed(message, media, fields)
            elif message.type == "image" and client.settings.vision:
                images[message.id] = f"data:{media.mime_type};base64,{base64.b64encode(media.content).decode()}"
            messages.append(message)
        return ReadBatch(messages, images)

    async def _keep(self, client: Client, message: StoredMessage, media: Media, fields: dict) -> None:
        if self._archive is None or message.media_path:
            return
        try:
            path = await self._archive.save(client.name, message.conversation_id, message.wamid or str(message.id), media)
        except Exception as error:  # the turn goes on; the file can still be fetched from Meta for 7 days
            log.warning("media.archive_failed", extra={**fields, "archive": self._archive.name,
                                                       "error": f"{type(error).__name__}: {error}"[:300]})
            return
        await self._store.set_media_path(message.id, path)

    async def _without_file(self, message: StoredMessage) -> StoredMessage:
        if message.type == "audio":
            return await self._note(message, "no transcription available")
        return message

    async def _transcribed(self, message: StoredMessage, media: Media, fields: dict) -> StoredMessage:
        if self._transcriber is None:
            return await self._note(message, "no transcription available")
        try:
            words = await self._transcriber.transcribe(media.content, media.mime_type)
        except Exception as error:  # any provider failure becomes a note; the turn goes on
            log.warning("media.transcription_failed", extra={**fields, "error": type(error).__name__})
            return await self._note(message, "could not be transcribed")
        return await self._retext(message, f"{_label(message)} {words}" if words else f"{_label(message)} (silent)")

    async def _note(self, message: StoredMessage, note: str) -> StoredMessage:
        if message.type != "audio":
            return message
        return await self._retext(message, f"{_label(message)} ({note})")

    async def _retext(self, message: StoredMessage, text: str) -> StoredMessage:
        await self._store.update_text(message.id, text)
        return replace(message, text=text)


def _label(message: StoredMessage) -> str:
    return (message.text or "[voice note]").split("]")[0] + "]"
