"""Archive of received media: Meta's URLs expire in minutes, so files a front end shows are kept here.

A local folder by default; Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_KEY are set. The message row
keeps the returned path (`media_path`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import re
import shutil
from collections.abc import Sequence
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
# Supabase Storage removes at most 1000 objects per request (its "Delete Objects" guide); lists are paged too.
_STORAGE_BATCH = 1000


def archived_type(mime_type: str) -> str:
    """The content type a file is archived under: its own when passive (no parameters), else octet-stream."""
    kind = mime_type.split(";")[0].strip().lower()
    return kind if kind in _PASSIVE_TYPES or kind.startswith(("audio/", "video/")) else _INERT


def type_of(path: str) -> str:
    """The type an archived file was saved under, from its name (archive_path gave it the type's extension)."""
    guessed = mimetypes.guess_type(path)[0]
    return archived_type(guessed) if guessed else _INERT


def archive_path(client: str, conversation_id: int, wamid: str, mime_type: str) -> str:
    """`<client>/<conversation>/<wamid>-<hash>.<ext>`, safe as a file and object name, one per wamid.

    The wamid made safe is only readable: Meta's are base64, whose '+' and '/' both become '_', so the name
    also carries a hash of the whole wamid."""
    extension = mimetypes.guess_extension(archived_type(mime_type)) or ".bin"
    digest = hashlib.sha256(wamid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{client}/{conversation_id}/{_UNSAFE.sub('_', wamid)[:100]}-{digest}{extension}"


def conversation_folder(client: str, conversation_id: int) -> str:
    """The folder (or object prefix) that holds every file archived from one conversation."""
    return f"{client}/{conversation_id}"


class MediaArchive(Protocol):
    name: str

    async def save(self, client: str, conversation_id: int, wamid: str, media: Media) -> str:
        """Keep a received file; returns the path to store on its message."""

    async def read(self, path: str) -> tuple[bytes, str] | None:
        """An archived file by the path `save` returned, and the type it was archived under; None when gone."""

    async def remove(self, paths: Sequence[str]) -> int:
        """Delete archived files by the paths `save` returned; those already gone are skipped. How many went."""

    async def remove_conversation(self, client: str, conversation_id: int) -> int:
        """Delete every file archived from a conversation; how many there were."""

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

    async def read(self, path: str) -> tuple[bytes, str] | None:
        target = self._inside(path)

        def load() -> bytes | None:
            try:
                return target.read_bytes() if target is not None else None
            except (FileNotFoundError, IsADirectoryError):
                return None

        content = await asyncio.to_thread(load)
        return (content, type_of(path)) if content is not None else None

    async def remove(self, paths: Sequence[str]) -> int:
        return await asyncio.to_thread(self._remove, list(paths))

    async def remove_conversation(self, client: str, conversation_id: int) -> int:
        folder = self._inside(conversation_folder(client, conversation_id))

        def remove() -> int:
            if folder is None or not folder.is_dir():
                return 0
            count = sum(1 for item in folder.rglob("*") if item.is_file())
            shutil.rmtree(folder)
            return count

        return await asyncio.to_thread(remove)

    def _remove(self, paths: list[str]) -> int:
        removed = 0
        for path in paths:
            target = self._inside(path)
            if target is not None and target.is_file():
                target.unlink()
                removed += 1
        return removed

    def _inside(self, relative: str) -> Path | None:
        """The file a stored path names, or None when it would lead outside the archive's folder."""
        root = self._root.resolve()
        target = (root / relative).resolve()
        return target if target != root and target.is_relative_to(root) else None

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

    async def _storage(self, bucket: str | None = None):
        if self._client is None:
            from supabase import AsyncClientOptions, acreate_client

            self._client = await acreate_client(self._url, self._key, AsyncClientOptions(httpx_client=self._http))
        return self._client.storage.from_(bucket or self._bucket)

    async def save(self, client: str, conversation_id: int, wamid: str, media: Media) -> str:
        relative = archive_path(client, conversation_id, wamid, media.mime_type)
        bucket = await self._storage()
        await bucket.upload(relative, media.content, {"content-type": archived_type(media.mime_type), "upsert": "true"})
        return f"{self._bucket}/{relative}"

    async def read(self, path: str) -> tuple[bytes, str] | None:
        from storage3.exceptions import StorageApiError

        bucket, _, name = path.partition("/")
        if not name:
            return None
        try:
            content = await (await self._storage(bucket)).download(name)
        except StorageApiError as error:
            # Storage answers a missing object with 400 or 404 and an error such as "not_found".
            if str(error.status) == "404" or "not" in str(error.code).lower() and "found" in str(error.code).lower():
                return None
            raise
        return content, type_of(name)

    async def remove(self, paths: Sequence[str]) -> int:
        # A stored path is `<bucket>/<object>`: the bucket it was saved in, even if SUPABASE_MEDIA_BUCKET changed.
        by_bucket: dict[str, list[str]] = {}
        for path in paths:
            bucket, _, name = path.partition("/")
            if name:
                by_bucket.setdefault(bucket, []).append(name)
        removed = 0
        for bucket, names in by_bucket.items():
            storage = await self._storage(bucket)
            for start in range(0, len(names), _STORAGE_BATCH):
                removed += len(await storage.remove(names[start:start + _STORAGE_BATCH]))
        return removed

    async def remove_conversation(self, client: str, conversation_id: int) -> int:
        folder = conversation_folder(client, conversation_id)
        storage = await self._storage()
        removed = 0
        while True:  # each pass removes what it listed, so the next lists what is left
            listed = await storage.list(folder, {"limit": _STORAGE_BATCH, "offset": 0})
            names = [f"{folder}/{item['name']}" for item in listed if item.get("id") is not None]
            if not names:
                return removed
            gone = len(await storage.remove(names))
            if not gone:
                raise RuntimeError(f"Supabase Storage listed {len(names)} file(s) under {folder} but removed none")
            removed += gone

    async def aclose(self) -> None:
        await self._http.aclose()
