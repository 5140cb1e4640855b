"""Shared in-memory fakes of the engine's collaborators: a client, a WhatsApp sender, a store subset, an agent."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.clients import Client, ClientSettings, ClientSpec, SendMode
from core.llm.agent import Turn, TurnResult
from core.llm.instructions import SinglePrompt
from core.retry import RetryPolicy
from core.storage.records import Claim, Conversation, Debounce, Mode, NewMessage, StoredMessage
from core.whatsapp.client import Media, Recipient
from core.whatsapp.errors import WhatsAppError
from core.whatsapp.pacing import Pacer

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FALLBACK = "Sorry, a person will answer soon."


def make_client(name: str = "demo", *, phone_number_ids: Collection[str] = ("2001",),
                waba_ids: Collection[str] = ("1001",), send_mode: SendMode = "live", app_secret: str | None = None,
                human_idle_minutes: float = 60, fallback_message: str = FALLBACK, smtp: bool = False) -> Client:
    """A ready client built directly (no environment read beyond an unused prefix); `smtp`: staff email set up."""
    email = {"smtp_host": "127.0.0.1", "smtp_to": ["staff@example.com"], "smtp_from": "bot@example.com"} if smtp else {}
    settings = ClientSettings(_env_prefix="UNIT_TEST_UNUSED_", _env_file=None,  # type: ignore[call-arg]
                              phone_number_ids=list(phone_number_ids), waba_ids=list(waba_ids),
                              human_idle_minutes=human_idle_minutes, **email)
    spec = ClientSpec(name=name, instructions=SinglePrompt("You are a test bot."))
    return Client(spec=spec, settings=settings, toolsets=spec.toolsets(), app_secret=app_secret, verify_token=None,
                  access_token="token-" + name if send_mode == "live" else None, model="m", classifier_model="m",
                  send_mode=send_mode, offline_message="offline", fallback_message=fallback_message,
                  debounce=Debounce(3, 15), waba_ids=frozenset(waba_ids))


def instant_pacer() -> Pacer:
    """A pacer that books slots but never waits: pacing is tested on its own in test_pacing."""
    async def no_sleep(seconds: float) -> None:
        return None

    return Pacer(per_number_per_second=80, pair_interval_seconds=6, monotonic=lambda: 0.0, sleep=no_sleep)


NO_WAIT_RETRY = RetryPolicy(attempts=3, base_seconds=0, max_wait_seconds=0, deadline_seconds=60)


@dataclass
class Sent:
    phone_number_id: str
    token: str | None
    to: str | None
    body: str


class FakeSender:
    """Records what would go to WhatsApp; `failures` are raised by the next send_text calls, in order."""

    def __init__(self, failures: Collection[BaseException | None] = (),
                 on_send: Callable[[str], None] | None = None) -> None:
        self.sent: list[Sent] = []
        self.attempts = 0
        self.reads: list[tuple[str, str, bool]] = []
        self._failures = list(failures)
        self._on_send = on_send
        self._wamids = itertools.count(1)

    async def send_text(self, phone_number_id: str, token: str | None, to: Recipient, body: str) -> str:
        self.attempts += 1
        if self._failures:
            failure = self._failures.pop(0)
            if failure is not None:
                raise failure
        self.sent.append(Sent(phone_number_id, token, to.wa_id or to.user_id, body))
        if self._on_send is not None:
            self._on_send(body)
        return f"wamid.out{next(self._wamids)}"

    async def mark_read(self, phone_number_id: str, token: str | None, wamid: str, typing: bool) -> None:
        self.reads.append((phone_number_id, wamid, typing))

    async def download_media(self, media_id: str, token: str | None, max_bytes: int) -> Media:
        raise WhatsAppError("no media in unit tests")

    @property
    def bodies(self) -> list[str]:
        return [sent.body for sent in self.sent]


def refusal(code: int | None, status_code: int | None = 400, title: str = "refused") -> WhatsAppError:
    return WhatsAppError(f"Graph error {code}", status_code=status_code, code=code, title=title)


class ScriptedAgent:
    """Answers each turn with the next scripted outcome: a TurnResult, an exception, or a coroutine function."""

    def __init__(self, *outcomes: TurnResult | BaseException | Callable[[Turn], Awaitable[TurnResult]]) -> None:
        self.turns: list[Turn] = []
        self._outcomes = list(outcomes)

    async def run(self, turn: Turn) -> TurnResult:
        self.turns.append(turn)
        outcome = self._outcomes.pop(0) if self._outcomes else TurnResult(reply="ok")
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return await outcome(turn)
        return outcome


def conversation(id: int = 1, *, client: str = "demo", mode: Mode = "bot", due_at: datetime | None = None,
                 last_inbound_at: datetime | None = T0, phone_number_id: str = "2001",
                 user_key: str = "5491155550001") -> Conversation:
    return Conversation(id=id, client=client, phone_number_id=phone_number_id, user_key=user_key, wa_id=user_key,
                        user_id=None, contact_name="Ana", mode=mode, due_at=due_at, last_inbound_at=last_inbound_at,
                        prompt_tokens=0, completion_tokens=0, created_at=T0, updated_at=T0)


@dataclass
class _Lease:
    owner: str
    until: datetime


@dataclass
class MemoryStore:
    """The few Store methods the scheduler, outbox and takeover call, kept in dicts (not a Store adapter)."""

    conversations: dict[int, Conversation] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    flags: list[tuple[int, str]] = field(default_factory=list)
    releases: list[tuple[int, datetime | None]] = field(default_factory=list)
    claim_calls: int = 0
    next_due_calls: int = 0
    claim_failures: list[BaseException] = field(default_factory=list)
    _leases: dict[int, _Lease] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add_conversation(self, **fields: Any) -> Conversation:
        created = conversation(id=len(self.conversations) + 1, **fields)
        self.conversations[created.id] = created
        return created

    def add_outbound(self, conversation_id: int, text: str) -> StoredMessage:
        message = StoredMessage(id=next(self._ids), conversation_id=conversation_id, wamid=None, direction="out",
                                role="assistant", type="text", text=text, payload=None, status="pending", error=None,
                                wa_timestamp=None, batch_id=None, processed_at=None, prompt_tokens=0,
                                completion_tokens=0, created_at=T0)
        self.messages[message.id] = message
        return message

    def complete(self, conversation_id: int) -> None:
        """What finish_turn does for a turn with nothing left: not due, lease gone."""
        self.conversations[conversation_id] = replace(self.conversations[conversation_id], due_at=None)
        self._leases.pop(conversation_id, None)

    def is_leased(self, conversation_id: int) -> bool:
        return conversation_id in self._leases

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int,
                        exclude_clients: Collection[str] = (), per_client: int | None = None) -> list[Claim]:
        self.claim_calls += 1
        if self.claim_failures:
            raise self.claim_failures.pop(0)
        free = [c for c in self.conversations.values()
                if c.due_at is not None and c.due_at <= now and c.mode == "bot" and c.client not in exclude_clients
                and (c.id not in self._leases or self._leases[c.id].until <= now)]
        claims: list[Claim] = []
        taken: dict[str, int] = {}
        for candidate in sorted(free, key=lambda c: (c.due_at, c.id)):
            if len(claims) == limit:
                break
            if taken.get(candidate.client, 0) >= (per_client or limit):
                continue
            taken[candidate.client] = taken.get(candidate.client, 0) + 1
            until = now + timedelta(seconds=lease_seconds)
            self._leases[candidate.id] = _Lease(owner, until)
            claims.append(Claim(candidate, owner, until))
        return claims

    async def next_due_at(self) -> datetime | None:
        self.next_due_calls += 1
        dues = [max(c.due_at, self._leases[c.id].until) if c.id in self._leases else c.due_at
                for c in self.conversations.values() if c.due_at is not None and c.mode == "bot"]
        return min(dues, default=None)

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        lease = self._leases.get(claim.conversation.id)
        if lease is None or lease.owner != claim.owner:
            return
        del self._leases[claim.conversation.id]
        self.releases.append((claim.conversation.id, retry_at))
        if retry_at is not None:
            current = self.conversations[claim.conversation.id]
            self.conversations[current.id] = replace(current, due_at=retry_at)

    async def mark_sent(self, message_id: int, wamid: str | None, status: str, error: dict[str, Any] | None) -> None:
        self.messages[message_id] = replace(self.messages[message_id], wamid=wamid, status=status, error=error)

    async def flag(self, conversation_id: int, reason: str) -> None:
        self.flags.append((conversation_id, reason))

    async def set_mode(self, client: str, conversation_id: int, mode: Mode, now: datetime) -> Conversation | None:
        current = self.conversations.get(conversation_id)
        if current is None or current.client != client:
            return None
        changed = replace(current, mode=mode, human_since=now if mode == "human" else None,
                          last_operator_at=now if mode == "human" else current.last_operator_at,
                          due_at=None if mode == "human" else current.due_at)
        self.conversations[conversation_id] = changed
        return changed

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None:
        found = self.conversations.get(conversation_id)
        return found if found is not None and found.client == client else None

    async def add_operator_message(self, conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
        stored = StoredMessage(id=next(self._ids), conversation_id=conversation_id, wamid=None,
                               direction=message.direction, role=message.role, type=message.type, text=message.text,
                               payload=None, status=message.status, error=None, wa_timestamp=None, batch_id=None,
                               processed_at=None, prompt_tokens=0, completion_tokens=0, created_at=now)
        self.messages[stored.id] = stored
        self.conversations[conversation_id] = replace(self.conversations[conversation_id], last_operator_at=now)
        return stored

    async def get_message(self, message_id: int) -> StoredMessage | None:
        return self.messages.get(message_id)

    async def release_idle_takeovers(self, client: str, idle_since: datetime) -> int:
        idle = [c for c in self.conversations.values() if c.client == client and c.mode == "human"
                and (c.last_operator_at or c.human_since or idle_since) < idle_since]
        for found in idle:
            self.conversations[found.id] = replace(found, mode="bot", human_since=None)
        return len(idle)


async def eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Wait, at most `timeout`, until `predicate()` holds; checked every millisecond."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


async def settle(rounds: int = 50) -> None:
    """Let every ready task run until it blocks: in-memory fakes never wait on I/O, so this is enough."""
    for _ in range(rounds):
        await asyncio.sleep(0)
