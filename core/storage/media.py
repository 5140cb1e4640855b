"""Archive of received media: Meta's URLs expire in minutes, so files a front end shows are kept here.

A local folder by default; Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_KEY are set. The message row
keeps the returned path (`media_path`)."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from pathlib import Path
from typing import Protocol

import httpx

from core.whatsapp.client import Media

log = logging.getLogger("core.media_archive")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def archive_path(client: str, conversation_id: int, wamid: str, mime_type: str) -> str:
    """`<client>/<conversation>/<wamid>.<ext>`, safe as a file and object name."""
    extension = mimetypes.guess_extension(mime_type.split(";")[0].strip()) or ".bin"
    return f"{client}/{conversation_id}/{_UNSAFE.sub('_', wamid)[:200]}{extension}"


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
        await bucket.upload(relative, media.content, {"content-type": media.mime_type.split(";")[0].strip(),
                                                      "upsert": "true"})
        return f"{self._bucket}/{relative}"

    async def aclose(self) -> None:
        await self._http.aclose()
