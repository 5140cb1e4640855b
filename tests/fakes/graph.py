"""A stand-in for Meta's Graph API: records every call, answers like Meta, fails on request."""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import signed


@dataclass(frozen=True)
class GraphCall:
    phone_number_id: str
    token: str | None
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def is_text(self) -> bool:
        return self.body.get("type") == "text"

    @property
    def text(self) -> str:
        return self.body["text"]["body"]


class FakeGraph:
    """Starlette app; `calls` lists what reached it (`refused` those answered with an error), `fail_next` queues
    Graph errors."""

    def __init__(self) -> None:
        self.calls: list[GraphCall] = []
        self.refused: list[GraphCall] = []
        self._failures: list[tuple[int, dict[str, Any], str | None]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Media Meta would hold: id -> (bytes, mime type); an id not listed is served as a short voice note.
        self.media: dict[str, tuple[bytes, str]] = {}
        self.media_downloads: list[str] = []
        # Media served with a Content-Encoding (id -> "gzip", …): their bytes in `media` are then as sent, encoded.
        self.media_encoding: dict[str, str] = {}
        # Media whose download declares this Content-Length, sends its first bytes, then stalls (a lying CDN).
        self.media_declared_length: dict[str, int] = {}
        # Message templates Meta would list per WABA id, served `template_page_size` a page with cursors.
        self.templates: dict[str, list[dict[str, Any]]] = {}
        self.template_page_size: int | None = None
        self.template_requests: list[dict[str, str]] = []
        self._status_hooks: StatusHooks | None = None
        self._posting: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[
            Route("/{phone_number_id}/messages", self._messages, methods=["POST"]),
            Route("/{waba_id}/message_templates", self._message_templates, methods=["GET"]),
            Route("/files/{media_id}", self._media_bytes, methods=["GET"]),
            Route("/{media_id}", self._media_lookup, methods=["GET"]),
        ])

    def fail_next(self, status: int, code: int, message: str = "error", *, to: str | None = None) -> None:
        """Answer the next message send (text, template, interactive, media…) with this Graph error (mark-as-read
        calls are not affected); with `to`, the next such send to that recipient."""
        self._failures.append((status, {"error": {"message": message, "type": "OAuthException", "code": code,
                                                  "fbtrace_id": "AbCdEf"}}, to))

    def sends_of(self, message_type: str) -> list[GraphCall]:
        """The sends of one Cloud API type (interactive, image, document, location…) that reached it."""
        return [call for call in self.calls if call.body.get("type") == message_type]

    def post_statuses(self, webhook_urls: list[str], waba_id: str, app_secret: str) -> None:
        """Like Meta: after each accepted text or template send, post its signed `sent` status (with the send's
        biz_opaque_callback_data) to one of `webhook_urls`, in turn, trying the next while one does not answer."""
        self._status_hooks = StatusHooks(list(webhook_urls), waba_id, app_secret)

    def template_sends(self) -> list[GraphCall]:
        return [call for call in self.calls if call.body.get("type") == "template"]

    async def _message_templates(self, request: Request) -> JSONResponse:
        """GET /{waba-id}/message_templates as Meta pages it: `data`, `paging.cursors`, and `next` while more remain."""
        waba_id = request.path_params["waba_id"]
        auth = request.headers.get("authorization", "")
        self.template_requests.append({"waba_id": waba_id, "token": auth.removeprefix("Bearer "),
                                       **dict(request.query_params)})
        if not auth.startswith("Bearer "):
            return JSONResponse({"error": {"message": "no token", "code": 190}}, status_code=401)
        items = self.templates.get(waba_id, [])  # a WABA without templates lists none
        size = self.template_page_size or int(request.query_params.get("limit", "25"))
        start = _cursor_position(request.query_params.get("after"))
        page = items[start:start + size]
        body: dict[str, Any] = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(page))}}
            if start + len(page) < len(items):
                body["paging"]["next"] = (f"{request.base_url}{waba_id}/message_templates?limit={size}"
                                          f"&after={_cursor(start + len(page))}")
        return JSONResponse(body)

    def texts(self) -> list[GraphCall]:
        return [call for call in self.calls if call.is_text]

    def _media_for(self, media_id: str) -> tuple[bytes, str]:
        return self.media.get(media_id, (b"OggS-fake-voice-" + media_id.encode(), "audio/ogg; codecs=opus"))

    async def _media_lookup(self, request: Request) -> JSONResponse:
        media_id = request.path_params["media_id"]
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"error": {"message": "no token", "code": 190}}, status_code=401)
        content, mime = self._media_for(media_id)
        url = f"{request.base_url}files/{media_id}"
        return JSONResponse({"url": url, "mime_type": mime, "file_size": len(content), "id": media_id,
                             "messaging_product": "whatsapp"})

    async def _media_bytes(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return Response(status_code=401)
        self.media_downloads.append(media_id)
        content, mime = self._media_for(media_id)
        headers = {"Content-Encoding": self.media_encoding[media_id]} if media_id in self.media_encoding else {}
        if media_id in self.media_declared_length:
            headers["Content-Length"] = str(self.media_declared_length[media_id])
            return StreamingResponse(self._stalled(content), media_type=mime.split(";")[0], headers=headers)
        return Response(content, media_type=mime.split(";")[0], headers=headers)

    @staticmethod
    async def _stalled(content: bytes):
        yield content
        await asyncio.sleep(10)  # cancelled as soon as the client goes away

    async def _messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        auth = request.headers.get("authorization", "")
        call = GraphCall(request.path_params["phone_number_id"], auth.removeprefix("Bearer ") or None, body)
        with self._lock:
            self.calls.append(call)
            recipient = body.get("to") or body.get("recipient")
            failure = next((item for item in self._failures if item[2] in (None, recipient)), None) \
                if "type" in call.body else None
            if failure:
                self._failures.remove(failure)
                self.refused.append(call)
        if failure:
            return JSONResponse(failure[1], status_code=failure[0])
        if body.get("status") == "read":
            return JSONResponse({"success": True})
        to = body.get("to") or body.get("recipient")
        wamid = f"wamid.FAKE{next(self._ids):06d}"
        if self._status_hooks is not None and body.get("type") in ("text", "template"):
            task = asyncio.create_task(self._status_hooks.post(call.phone_number_id, wamid, body))
            self._posting.add(task)
            task.add_done_callback(self._posting.discard)
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                             "messages": [{"id": wamid}]})


@dataclass
class StatusHooks:
    """Where the stand-in posts status webhooks, and how it signs them; `posted` counts the ones a server took."""

    urls: list[str]
    waba_id: str
    app_secret: str
    posted: int = 0
    _turn: itertools.count = field(default_factory=itertools.count)
    # One client for all posts, made in the stand-in's own loop: a client a post costs milliseconds of CPU (its TLS
    # context), which would hold back the stand-in's answers to the sends.
    _http: httpx.AsyncClient | None = None

    async def post(self, phone_number_id: str, wamid: str, send: dict[str, Any]) -> None:
        status: dict[str, Any] = {"id": wamid, "status": "sent", "timestamp": str(int(time.time())),
                                  "recipient_id": send.get("to")}
        if "biz_opaque_callback_data" in send:
            status["biz_opaque_callback_data"] = send["biz_opaque_callback_data"]
        delivery = {"object": "whatsapp_business_account", "entry": [{"id": self.waba_id, "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "5491100000000", "phone_number_id": phone_number_id},
                "statuses": [status]}}]}]}
        raw, headers = signed(delivery, self.app_secret)
        first = next(self._turn)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32))
        for n in range(len(self.urls)):
            try:
                answer = await self._http.post(self.urls[(first + n) % len(self.urls)] + "/webhook", content=raw,
                                               headers=headers)
            except httpx.HTTPError:
                continue  # that server is gone: Meta retries elsewhere (here, the next one at once)
            if answer.status_code == 200:
                self.posted += 1
                return


def _cursor(position: int) -> str:
    """An opaque-looking cursor, as Meta's are (base64 of the position)."""
    return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode()


def _cursor_position(cursor: str | None) -> int:
    return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("pos:")) if cursor else 0
