"""A stand-in for Meta's Graph API: records every call, answers like Meta, fails on request."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(frozen=True)
class GraphCall:
    phone_number_id: str
    token: str | None
    body: dict[str, Any]

    @property
    def is_text(self) -> bool:
        return self.body.get("type") == "text"

    @property
    def text(self) -> str:
        return self.body["text"]["body"]


class FakeGraph:
    """Starlette app; `calls` lists what reached it, `fail_next` queues Graph errors."""

    def __init__(self) -> None:
        self.calls: list[GraphCall] = []
        self._failures: list[tuple[int, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{phone_number_id}/messages", self._messages, methods=["POST"])])

    def fail_next(self, status: int, code: int, message: str = "error") -> None:
        """Answer the next text send with this Graph error (mark-as-read calls are not affected)."""
        self._failures.append((status, {"error": {"message": message, "type": "OAuthException", "code": code,
                                                  "fbtrace_id": "AbCdEf"}}))

    def texts(self) -> list[GraphCall]:
        return [call for call in self.calls if call.is_text]

    async def _messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        auth = request.headers.get("authorization", "")
        call = GraphCall(request.path_params["phone_number_id"], auth.removeprefix("Bearer ") or None, body)
        with self._lock:
            self.calls.append(call)
            failure = self._failures.pop(0) if self._failures and call.is_text else None
        if failure:
            return JSONResponse(failure[1], status_code=failure[0])
        if body.get("status") == "read":
            return JSONResponse({"success": True})
        to = body.get("to") or body.get("recipient")
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                             "messages": [{"id": f"wamid.FAKE{next(self._ids):06d}"}]})
