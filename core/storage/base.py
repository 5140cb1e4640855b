"""The Store protocol: everything the service keeps, behind one small interface per adapter."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from core.storage.records import Claim, Conversation, Debounce, InboundResult, NewMessage, StoredMessage
from core.webhook.events import InboundMessage, StatusUpdate


class StoreUnavailable(Exception):
    """The store could not do what was asked (database down, locked too long, disk full)."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create the schema when missing."""

    async def close(self) -> None: ...

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce, now: datetime) -> InboundResult:
        """Store a user's message once (keyed on wamid) and push the conversation's due time."""

    async def record_status(self, update: StatusUpdate, now: datetime) -> bool:
        """Keep a status report and move the named outbound message forward; True when it names a known message."""

    async def next_due_at(self) -> datetime | None:
        """The earliest due time of a conversation waiting for an answer."""

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Claim]:
        """Lease up to `limit` due conversations to `owner`; a leased one is skipped until its lease expires."""

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        """Extend a lease still held by its owner; None when it was lost."""

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        """Give a conversation back without completing its batch; it is due again at `retry_at`."""

    async def pending_batch(self, conversation_id: int) -> list[StoredMessage]:
        """Unanswered user messages, in WhatsApp timestamp order, then arrival."""

    async def history(self, conversation_id: int, limit: int) -> list[StoredMessage]:
        """The last `limit` handled messages, oldest first, in the order they happened."""

    async def complete_batch(
        self, claim: Claim, batch: list[StoredMessage], batch_id: str, produced: list[NewMessage], now: datetime
    ) -> None:
        """Atomically mark the batch answered, store what the turn produced, add its tokens and release."""

    async def list_conversations(self, client: str, limit: int, offset: int) -> list[Conversation]: ...

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None: ...

    async def list_messages(self, conversation_id: int, limit: int, offset: int) -> list[StoredMessage]: ...
