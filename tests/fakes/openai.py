"""A stand-in for OpenAI's Chat Completions: records requests and answers from a script or by echoing."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text, tool calls (name, arguments), or an HTTP error status."""

    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # with an error status: e.g. {"retry-after": "1"}


def echo(body: dict[str, Any]) -> Reply:
    """Default behaviour: answer with the user messages since the last assistant message."""
    users: list[str] = []
    for message in body["messages"]:
        if message["role"] == "user":
            users.append(message["content"])
        elif message["role"] == "assistant":
            users = []
    return Reply(content="echo: " + " | ".join(users))


CLASSIFIER_PROMPT_START = "Classify the user's latest messages"


def is_classifier_request(body: dict[str, Any]) -> bool:
    first = body["messages"][0] if body.get("messages") else {}
    return first.get("role") == "system" and str(first.get("content", "")).startswith(CLASSIFIER_PROMPT_START)


class FakeOpenAI:
    """Starlette app serving POST /v1/chat/completions (and audio transcriptions).

    Classifier calls (clients with classified instructions) are answered by `category` and recorded in
    `classifier_requests`, apart from the answering calls in `requests` and the script; set `category` to None
    to script and inspect classifier calls like any other."""

    def __init__(self, respond: Callable[[dict[str, Any]], Reply] = echo) -> None:
        self.requests: list[dict[str, Any]] = []
        self.classifier_requests: list[dict[str, Any]] = []
        self.category: str | None = ""  # "" answers nothing usable: the client's default category
        self.auth: list[str] = []
        self.respond = respond
        self.transcript = "hola, quería consultar por un curso"
        self.latency_seconds = 0.0  # how long the "model" takes per answer (benchmarks set a realistic one)
        self.transcriptions: list[dict[str, Any]] = []
        # A provider's rate limit, answered at once (before the gate) with 429 and `retry_after` as Retry-After
        # (none when None): the next `refuse_next` completions, and any arriving while `capacity` are being
        # answered. `in_flight` counts the accepted ones being answered; `refused` counts the 429s.
        self.refuse_next = 0
        self.capacity: int | None = None
        self.retry_after: str | None = "0"
        self.in_flight = 0
        self.refused = 0
        # While cleared, chat completions wait (up to a minute): lets a test act while the model "thinks".
        self.gate = threading.Event()
        self.gate.set()
        # While cleared, 429s wait too: a test can have every refused call arrive before any refusal is answered.
        self.refusal_gate = threading.Event()
        self.refusal_gate.set()
        self._script: list[Reply] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
        ])

    async def _transcriptions(self, request: Request) -> JSONResponse:
        form = await request.form()
        upload = form["file"]
        self.transcriptions.append({"model": form.get("model"), "filename": upload.filename,
                                    "content": await upload.read()})
        return JSONResponse({"text": self.transcript})

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before falling back to `respond`."""
        self._script.extend(replies)

    async def _completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self.category is not None and is_classifier_request(body):
            self.classifier_requests.append(body)
            return self._completion(body, Reply(content=self.category))
        with self._lock:
            if self.refuse_next or (self.capacity is not None and self.in_flight >= self.capacity):
                self.refuse_next = max(0, self.refuse_next - 1)
                self.refused += 1
                headers = {"retry-after": self.retry_after} if self.retry_after is not None else {}
                refusal: JSONResponse | None = self._error(Reply(status=429, headers=headers))
            else:
                refusal = None
                self.in_flight += 1
                self.requests.append(body)
                self.auth.append(request.headers.get("authorization", ""))
                reply = self._script.pop(0) if self._script else None
        if refusal is not None:
            if not self.refusal_gate.is_set():
                await asyncio.to_thread(self.refusal_gate.wait, 60)
            return refusal
        try:
            if not self.gate.is_set():
                await asyncio.to_thread(self.gate.wait, 60)
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
        finally:
            with self._lock:
                self.in_flight -= 1
        reply = reply or self.respond(body)
        if reply.status != 200:
            return self._error(reply)
        return self._completion(body, reply)

    @staticmethod
    def _error(reply: Reply) -> JSONResponse:
        kind = "rate_limit_exceeded" if reply.status == 429 else "server_error"
        return JSONResponse({"error": {"message": "scripted failure", "type": kind}}, status_code=reply.status,
                            headers=reply.headers)

    def _completion(self, body: dict[str, Any], reply: Reply) -> JSONResponse:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(arguments)}}
                for name, arguments in reply.tool_calls
            ]
        return JSONResponse({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        })
