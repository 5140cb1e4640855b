"""Archive of received media: Meta's URLs expire in minutes, so files a front end shows are kept here.

A local folder by default; Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_KEY are set. The message row
keeps the returned path (`media_path`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import re
from pathlib import Path
from typing import Protocol

import httpx

from core.whatsapp.client import Media

log = logging.getLogger("core.media_archive")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# Types a browser shows or hands to a player or viewer without running anything of the file on the archive's
# origin. Any other (HTML, SVG, XML, JavaScript, whatever a person sends as a document) is archived as
# application/octet-stream with a .bin name, so a public archive URL never serves a page that runs script.
_PASSIVE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif", "image/avif", "image/bmp",
    "application/pdf", "text/plain", "text/csv", "application/zip",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})
_INERT = "application/octet-stream"


def archived_type(mime_type: str) -> str:
    """The content type a file is archived under: its own when passive (no parameters), else octet-stream."""
    kind = mime_type.split(";")[0].strip().lower()
    return kind if kind in _PASSIVE_TYPES or kind.startswith(("audio/", "video/")) else _INERT


def archive_path(client: str, conversation_id: int, wamid: str, mime_type: str) -> str:
    """`<client>/<conversation>/<wamid>-<hash>.<ext>`, safe as a file and object name, one per wamid.

    The wamid made safe is only readable: Meta's are base64, whose '+' and '/' both become '_', so the name
    also carries a hash of the whole wamid."""
    extension = mimetypes.guess_extension(archived_type(mime_type)) or ".bin"
    digest = hashlib.sha256(wamid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{client}/{conversation_id}/{_UNSAFE.sub('_', wamid)[:100]}-{digest}{extension}"


class MediaArchive(Protocol):
    name: str

    async def save(self, client: str, conversation_id: int, wamid: str, media: Media) -> str:
        """Keep a received file; returns the path to store on its message."""

    async def aclose(self) -> None: ...


class LocalMediaArchive:
    """Files under a folder (MEDIA_ARCHIVE_DIR); fine on a laptop, lost with a Heroku dyno's disk."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self._root = root

    async def save(self, client: str, conversation_id: int, wamid: str, media: Media) -> str:
        relative = archive_path(client, conversation_id, wamid, media.mime_type)

        def write() -> None:
            target = self._root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(media.content)

        await asyncio.to_thread(write)
        return relative

    async def aclose(self) -> None:
        pass


class SupabaseMediaArchive:
    """Objects in a Supabase Storage bucket, through the supabase client on our own httpx client."""

    name = "supabase"

    def __init__(self, url: str, service_key: str, bucket: str, *, timeout: float = 30.0) -> None:
        self._url = url
        self._key = service_key
        self._bucket = bucket
        # supabase's async client does not close the httpx client it is given (PLATFORM.md §2): we own it.
        self._http = httpx.AsyncClient(timeout=timeout)
        self._client = None

    async def _storage(self):
        if self._client is None:
            from supabase import AsyncClientOptions, acreate_client

            self._client = await acreate_client(self._url, self._key, AsyncClientOptions(httpx_client=self._http))
        return self._client.storage.from_(self._bucket)

    async def save(self, client: str, conversation_id: int, wamid: str, media: Media) -> str:
        relative = archive_path(client, conversation_id, wamid, media.mime_type)
        bucket = await self._storage()
        await bucket.upload(relative, media.content, {"content-type": archived_type(media.mime_type), "upsert": "true"})
        return f"{self._bucket}/{relative}"

    async def aclose(self) -> None:
        await self._http.aclose()
