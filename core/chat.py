"""`python -m core chat <client>`: talk to a client's bot from a terminal, through the real webhook path.

Each line typed is sent as a WhatsApp delivery (current timestamp) to the client's sandbox number, signed with
the sandbox secret; the bot's replies are printed as the sandbox records them. Lines typed quickly one after
another are one burst, answered once, as on WhatsApp."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from core.config import Settings
from core.webhook.signature import sign

POLL_SECONDS = 0.4  # a person does not notice; the server's access log stays readable


class ChatError(Exception):
    """The chat cannot go on; the message says what to do."""


@dataclass(frozen=True)
class ChatTarget:
    url: str
    client: str
    secret: str
    user: str
    name: str


@dataclass
class _Progress:
    """What the chat has shown, and what it still waits for."""

    baseline: int = 0  # messages up to this id were there before the chat started
    shown: set[int] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)  # wamids sent and not yet handled by the bot
    last_sent_at: float = 0.0
    flagged: str | None = None


class ChatSession:
    """One person's chat with one sandbox client: sends deliveries, prints what comes back."""

    def __init__(self, http: httpx.Client, target: ChatTarget, out: TextIO, *, verbose: bool = False) -> None:
        self._http = http
        self._target = target
        self._out = out
        self._verbose = verbose
        self._progress = _Progress()
        self._lock = threading.Lock()
        self.phone_number_id = ""
        self.llm = ""

    def connect(self) -> None:
        """Find the client's sandbox number; fails with what to do when the server or the secret is wrong."""
        target = self._target
        try:
            response = self._http.get(f"{target.url}/sandbox/{target.client}", headers=self._auth())
        except httpx.HTTPError as error:
            raise ChatError(f"no server answers at {target.url} ({type(error).__name__}): start one with "
                            "./scripts/serve, or run the chat with --local") from error
        if response.status_code == 401:
            raise ChatError("the server refused the sandbox secret: start the chat in the folder the server runs in "
                            "(it reads data/sandbox_secret), or give the server's SANDBOX_SECRET with --secret")
        if response.status_code != 200:
            raise ChatError(_detail(response))
        info = response.json()
        self.phone_number_id, self.llm = info["phone_number_id"], info["llm"]
        conversation = self._read()
        self._progress.baseline = max((m["id"] for m in conversation["messages"]), default=0)

    def send(self, text: str) -> None:
        """Deliver one typed line as Meta would: a signed `messages` webhook."""
        wamid = f"wamid.chat.{uuid.uuid4().hex}"
        raw = json.dumps(self._delivery(wamid, text)).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(self._target.secret, raw)}
        with self._lock:
            self._progress.waiting.add(wamid)
            self._progress.last_sent_at = time.monotonic()
        try:
            response = self._http.post(f"{self._target.url}/webhook", content=raw, headers=headers)
        except httpx.HTTPError as error:
            raise ChatError(f"the server at {self._target.url} stopped answering ({type(error).__name__})") from error
        if response.status_code != 200:
            raise ChatError(f"the webhook refused the message: {response.status_code} {_detail(response)}")

    def poll(self) -> bool:
        """Print what is new; True when everything sent has been answered (or handled without an answer)."""
        conversation = self._read()
        with self._lock:
            for line in self._news(conversation):
                print(line, file=self._out, flush=True)
            sending = any(m["direction"] == "out" and m["status"] == "pending" for m in conversation["messages"])
            due = (conversation["conversation"] or {}).get("due_at") is not None
            return not self._progress.waiting and not sending and not due

    def wait_settled(self, timeout: float) -> None:
        """Poll until every message sent has been handled, or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                raise ChatError(f"no answer after {timeout:g} s: see the server's log (look for client="
                                f"{self._target.client})")
            time.sleep(POLL_SECONDS)

    def _read(self) -> dict[str, Any]:
        target = self._target
        response = self._http.get(f"{target.url}/sandbox/{target.client}/conversations/{target.user}",
                                  params={"after": self._progress.baseline}, headers=self._auth())
        if response.status_code != 200:
            raise ChatError(f"cannot read the conversation: {response.status_code} {_detail(response)}")
        return response.json()

    def _news(self, conversation: dict[str, Any]) -> Iterator[str]:
        progress = self._progress
        for message in conversation["messages"]:
            if message["direction"] == "in":
                if message["processed_at"] and message["wamid"] in progress.waiting:
                    progress.waiting.discard(message["wamid"])
                continue
            if message["id"] in progress.shown or message["status"] == "pending":
                continue  # a reply is stored pending, then sent: show it once it went out
            progress.shown.add(message["id"])
            yield from self._lines(message)
        summary = conversation["conversation"] or {}
        reason = summary.get("attention_reason") if summary.get("needs_attention") else None
        if reason and reason != progress.flagged:
            progress.flagged = reason
            yield f"  ! the conversation is flagged for a person: {reason}"

    def _lines(self, message: dict[str, Any]) -> Iterator[str]:
        client = self._target.client
        if message["direction"] == "out":
            speaker = client if message["role"] == "assistant" else f"{client} (a person)"
            yield f"{speaker}> {message['text']}"
            if message["status"] == "failed":
                yield f"  ! not sent: {(message['error'] or {}).get('message', 'refused')}"
            if self._verbose and message["role"] == "assistant":
                yield f"  · {_facts(message, time.monotonic() - self._progress.last_sent_at)}"
        elif self._verbose and message["type"] == "tool_calls":
            if message["text"]:
                yield f"  · model, beside its tool calls: {message['text']}"
            for call in (message["payload"] or {}).get("tool_calls", []):
                yield f"  · tool call {call['function']['name']}({call['function']['arguments']})"
            if message["prompt_tokens"] or message["completion_tokens"]:
                yield f"  · tokens {message['prompt_tokens']} in, {message['completion_tokens']} out"
        elif self._verbose and message["type"] == "tool_result":
            name = (message["payload"] or {}).get("name", "tool")
            yield f"  · {name} returned: {_shorten(message['text'] or '')}"

    def _delivery(self, wamid: str, text: str) -> dict[str, Any]:
        target = self._target
        return {"object": "whatsapp_business_account", "entry": [{"id": "sandbox", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.phone_number_id, "phone_number_id": self.phone_number_id},
                "contacts": [{"profile": {"name": target.name}, "wa_id": target.user}],
                "messages": [{"from": target.user, "id": wamid, "timestamp": str(int(time.time())), "type": "text",
                              "text": {"body": text}}]}}]}]}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._target.secret}"}


def run_chat(session: ChatSession, lines: Iterable[str], *, timeout: float) -> None:
    """Send each line as it comes while a poller prints replies; at the end, wait for the last answers."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def print_replies() -> None:
        while not stop.is_set():
            try:
                session.poll()
            except (ChatError, httpx.HTTPError) as error:
                failure.append(error)
                return
            stop.wait(POLL_SECONDS)

    poller = threading.Thread(target=print_replies, name="chat-replies", daemon=True)
    poller.start()
    try:
        for line in lines:
            text = line.strip()
            if text in ("/quit", "/exit"):
                break
            if text:
                session.send(text)
            if failure:
                raise ChatError(str(failure[0]))
    finally:
        stop.set()
        poller.join()
    session.wait_settled(timeout)


@contextlib.contextmanager
def local_server(settings: Settings) -> Iterator[str]:
    """Run the app in this process (uvicorn on a free port of 127.0.0.1) for `--local`; yields its URL."""
    import uvicorn  # only --local needs a server in this process

    from core.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="chat-local-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ChatError("the local server did not start: see the messages above")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _facts(message: dict[str, Any], seconds: float) -> str:
    parts = []
    if message["category"]:
        parts.append(f"category {message['category']}")
    parts.append(f"tokens {message['prompt_tokens']} in, {message['completion_tokens']} out")
    parts.append(f"{seconds:.1f} s after your last message")
    return " · ".join(parts)


def _shorten(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:300]
