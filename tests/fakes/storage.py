"""A stand-in for Supabase Storage's object API (upload, list, remove), served on 127.0.0.1 by tests.fakes.server."""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeStorage:
    """Objects per bucket in memory, with the request shapes of storage3 (the supabase client's storage part)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.fail = False
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        # The list route first: it would otherwise read as an upload to a bucket named "list".
        self.app = Starlette(routes=[
            Route("/storage/v1/object/list/{bucket}", self._list, methods=["POST"]),
            Route("/storage/v1/object/{bucket}", self._remove, methods=["DELETE"]),
            Route("/storage/v1/object/{bucket}/{path:path}", self._upload, methods=["POST"]),
        ])

    def names(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(name for kind, name in self.objects if kind == bucket)

    def _refused(self) -> JSONResponse | None:
        if self.fail:
            return JSONResponse({"statusCode": "500", "error": "internal", "message": "storage down"}, status_code=500)
        return None

    async def _upload(self, request: Request) -> JSONResponse:
        bucket, path = request.path_params["bucket"], request.path_params["path"]
        self.requests.append(("upload", request.headers.get("authorization", "")))
        if refused := self._refused():
            return refused
        form = await request.form()
        upload = form["file"]
        content = await upload.read()  # type: ignore[union-attr]
        with self._lock:
            self.objects[(bucket, path)] = content
        return JSONResponse({"Key": f"{bucket}/{path}", "Id": "1"})

    async def _list(self, request: Request) -> JSONResponse:
        bucket = request.path_params["bucket"]
        self.requests.append(("list", request.headers.get("authorization", "")))
        if refused := self._refused():
            return refused
        body: dict[str, Any] = await request.json()
        prefix = body.get("prefix", "").strip("/")
        start = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for name in self.names(bucket):
            if not name.startswith(start):
                continue
            first, _, rest = name[len(start):].partition("/")
            # As Storage answers: files with an id, sub-folders with id null.
            entries[first] = {"name": first, "id": None if rest else f"id-{name}", "metadata": {} if not rest else None}
        found = [entries[name] for name in sorted(entries)]
        offset, limit = int(body.get("offset", 0)), int(body.get("limit", 100))
        return JSONResponse(found[offset:offset + limit])

    async def _remove(self, request: Request) -> JSONResponse:
        bucket = request.path_params["bucket"]
        self.requests.append(("remove", request.headers.get("authorization", "")))
        if refused := self._refused():
            return refused
        body: dict[str, Any] = await request.json()
        removed = []
        with self._lock:
            for name in body.get("prefixes", []):
                if self.objects.pop((bucket, name), None) is not None:
                    removed.append({"name": name, "bucket_id": bucket})
        return JSONResponse(removed)
