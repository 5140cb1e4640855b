"""Non-text messages made readable for the model: voice notes transcribed, images passed as image input."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field, replace

from core.clients import Client
from core.llm.transcription import Transcriber
from core.storage.base import Store
from core.storage.records import StoredMessage
from core.whatsapp.client import WhatsAppSender
from core.whatsapp.errors import WhatsAppError

log = logging.getLogger("core.media")


@dataclass(frozen=True)
class ReadBatch:
    """The batch with texts updated, and image inputs (data URLs) by message id."""

    messages: list[StoredMessage]
    images: dict[int, str] = field(default_factory=dict)


class MediaReader:
    """Downloads what the model needs; any failure degrades to a note in the text, never a failed turn."""

    def __init__(self, store: Store, transcriber: Transcriber | None, max_bytes: int) -> None:
        self._store = store
        self._transcriber = transcriber
        self._max_bytes = max_bytes

    async def read(self, client: Client, sender: WhatsAppSender, batch: list[StoredMessage]) -> ReadBatch:
        messages: list[StoredMessage] = []
        images: dict[int, str] = {}
        for message in batch:
            media = (message.payload or {}).get(message.type) if message.type in {"audio", "image"} else None
            media_id = media.get("id") if isinstance(media, dict) else None
            if not media_id:
                messages.append(message)
                continue
            fields = {"client": client.name, "conversation": message.conversation_id, "wamid": message.wamid}
            if message.type == "audio":
                text = await self._transcript(client, sender, media_id, message, fields)
                await self._store.update_text(message.id, text)
                message = replace(message, text=text)
            elif client.settings.vision:
                try:
                    found = await sender.download_media(media_id, client.access_token, self._max_bytes)
                    images[message.id] = f"data:{found.mime_type};base64,{base64.b64encode(found.content).decode()}"
                except WhatsAppError as error:
                    log.warning("media.image_unavailable", extra={**fields, "error": str(error)})
            messages.append(message)
        return ReadBatch(messages, images)

    async def _transcript(self, client: Client, sender: WhatsAppSender, media_id: str, message: StoredMessage,
                          fields: dict) -> str:
        label = (message.text or "[voice note]").split("]")[0] + "]"
        if self._transcriber is None:
            return f"{label} (no transcription available)"
        try:
            found = await sender.download_media(media_id, client.access_token, self._max_bytes)
        except WhatsAppError as error:
            log.warning("media.download_failed", extra={**fields, "error": str(error)})
            return f"{label} (could not be downloaded)"
        try:
            words = await self._transcriber.transcribe(found.content, found.mime_type)
        except Exception as error:  # any provider failure becomes a note; the turn goes on
            log.warning("media.transcription_failed", extra={**fields, "error": type(error).__name__})
            return f"{label} (could not be transcribed)"
        return f"{label} {words}" if words else f"{label} (silent)"
