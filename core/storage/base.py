"""The Store protocol: everything the service keeps, behind one small interface per adapter."""

from __future__ import annotations

from datetime import datetime
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from core.storage.records import (
    Claim,
    ClientBacklog,
    Conversation,
    ConversationQuery,
    Debounce,
    Effect,
    InboundResult,
    Intent,
    Mode,
    NewMessage,
    StoredMessage,
    TurnInputs,
)
from core.webhook.events import InboundMessage, StatusUpdate


class StoreUnavailable(Exception):
    """The store could not do what was asked (database down, locked too long, disk full)."""


class LeaseLost(Exception):
    """The processor no longer holds the conversation (its lease ran out and another took it): it must not write."""


class Flags(Protocol):
    """A conversation marked for a person's attention."""

    async def flag(self, conversation_id: int, reason: str) -> None:
        """Mark a conversation as needing a person's attention."""


class Sends(Flags, Protocol):
    """What the outbox records of a send."""

    async def mark_sent(self, message_id: int, wamid: str | None, status: str, error: dict[str, Any] | None) -> None:
        """Record the outcome of sending a stored outbound message."""


class InboundStore(Protocol):
    """What the webhook stores before its 200."""

    async def record_inbound(self, client: str, message: InboundMessage, debounce: Debounce, now: datetime) -> InboundResult:
        """Store a user's message once (keyed on wamid) and push the conversation's due time."""

    async def record_status(self, client: str, update: StatusUpdate, now: datetime) -> bool:
        """Keep a status report and move the client's named outbound message forward; True when it names one."""


class ClaimStore(Protocol):
    """How the scheduler finds and leases due conversations."""

    async def next_due_at(self) -> datetime | None:
        """The earliest due time of a conversation waiting for an answer."""

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int,
                        exclude_clients: Collection[str] = (), per_client: int | None = None) -> list[Claim]:
        """Lease up to `limit` due conversations (at most `per_client` of one client) to `owner`, earliest due
        first, skipping leased ones and the clients named."""

    async def release(self, claim: Claim, retry_at: datetime | None) -> None:
        """Give a conversation back without completing its batch; it is due again at `retry_at`."""


class TurnStore(ClaimStore, Sends, Protocol):
    """What one turn reads and writes, from its claim to its reply."""

    async def renew_lease(self, claim: Claim, now: datetime, lease_seconds: float) -> Claim | None:
        """Extend a lease still held by its owner; None when it was lost."""

    async def pending_batch(self, conversation_id: int) -> list[StoredMessage]:
        """Unanswered user messages, in WhatsApp timestamp order, then arrival."""

    async def history(self, conversation_id: int, limit: int) -> list[StoredMessage]:
        """The last `limit` handled messages, oldest first, in the order they happened."""

    async def update_text(self, message_id: int, text: str) -> None:
        """Replace a message's text (a voice note's transcript, a described image)."""

    async def set_media_path(self, message_id: int, path: str) -> None:
        """Record where a received file was archived."""

    async def save_turn(self, claim: Claim, batch: list[StoredMessage], batch_id: str, produced: list[NewMessage],
                        now: datetime, intents: Sequence[Intent] = ()) -> list[StoredMessage]:
        """Atomically mark the batch answered and store what the turn produced and decided, adding its tokens.

        Outbound messages are stored `pending` and returned, to be sent and then marked with `mark_sent`; a
        conversation taken over by an operator meanwhile gets none (returns []). Intents take effect in the same
        transaction: records are added, a hand-over sets mode `human`, emails enter the effects outbox.
        Raises LeaseLost when the claim no longer holds the conversation."""

    async def turn_inputs(self, conversation_id: int, history_limit: int) -> TurnInputs:
        """Unsent replies, the pending batch and (when there is one) the last `history_limit` handled messages,
        in one round trip: what `unsent_replies`, `pending_batch` and `history` would give."""

    async def unsent_replies(self, conversation_id: int) -> list[StoredMessage]:
        """The bot's replies stored but not yet sent (a processor died between storing and sending)."""

    async def finish_turn(self, claim: Claim, now: datetime) -> None:
        """Release the lease; the conversation stays due only if messages arrived meanwhile."""

    async def count_failure(self, claim: Claim, prompt_tokens: int, completion_tokens: int) -> int:
        """One more failed attempt at the pending batch (its tokens added to the totals); returns how many so far.

        A stored turn starts the count again. Raises LeaseLost when the claim no longer holds the conversation."""


class OperatorStore(Sends, Protocol):
    """What the people running a bot read and do through the API."""

    async def set_mode(self, client: str, conversation_id: int, mode: Mode, now: datetime) -> Conversation | None:
        """Hand a conversation to an operator (`human`) or back to the bot; None when it is not the client's."""

    async def resolve(self, client: str, conversation_id: int, now: datetime) -> Conversation | None:
        """Clear a conversation's `needs_attention` (a person has looked); None when it is not the client's."""

    async def bot_enabled(self, client: str) -> bool:
        """Whether the client's bot answers new messages (on unless switched off)."""

    async def set_bot_enabled(self, client: str, enabled: bool, now: datetime) -> bool:
        """Switch the client's bot on or off for the messages that arrive from now on; the stored value."""

    async def add_operator_message(self, conversation_id: int, message: NewMessage, now: datetime) -> StoredMessage:
        """Store an operator's outbound message (pending) and note the operator's activity."""

    async def release_idle_takeovers(self, client: str, idle_since: datetime) -> int:
        """Give back to the bot the client's conversations with no operator action since `idle_since`."""

    async def list_conversations(self, client: str, limit: int, offset: int,
                                 query: ConversationQuery = ConversationQuery()) -> list[Conversation]:
        """The client's conversations that match `query`: active ones first (when it says since when), then the
        most recently updated."""

    async def get_conversation(self, client: str, conversation_id: int) -> Conversation | None: ...

    async def find_conversation(self, client: str, phone_number_id: str, user_key: str) -> Conversation | None:
        """The conversation of one person with one of the client's numbers, if they have written."""

    async def list_messages(self, conversation_id: int, limit: int, offset: int) -> list[StoredMessage]: ...

    async def get_message(self, message_id: int) -> StoredMessage | None: ...


class ClientDataStore(Protocol):
    """A client's own documents and records (catalogues, leads)."""

    async def get_document(self, client: str, key: str) -> Any | None:
        """A client's JSON document stored under `key`, or None."""

    async def put_document(self, client: str, key: str, data: Any, now: datetime) -> None:
        """Store (replace) a client's JSON document under `key`."""

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None,
                         now: datetime) -> int:
        """Append a record of `kind` (e.g. a lead) for a client; returns its id."""

    async def list_records(self, client: str, kind: str, limit: int, offset: int) -> list[dict[str, Any]]:
        """A client's records of `kind`, oldest first, each with its id, conversation, time and reference."""

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        """A conversation's records of `kind` created at or after `since`, oldest first (ref and data)."""


class EffectStore(Flags, Protocol):
    """The effects outbox: what turns decided, carried out from the store."""

    async def claim_effects(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Effect]:
        """Lease up to `limit` effects due by `now` (pending, not leased by someone else), oldest due first."""

    async def settle_effect(self, effect: Effect, owner: str, now: datetime, *, error: str | None = None,
                            retry_at: datetime | None = None) -> bool:
        """Record an attempt: done (no error), to retry at `retry_at`, or failed for good; False if not leased."""

    async def list_effects(self, client: str, conversation_id: int) -> list[Effect]:
        """A conversation's effects in the order they were decided."""


class ObservabilityStore(Protocol):
    """What /metrics and /ready read: the backlog waiting per client, and the migrations applied."""

    async def backlog(self, now: datetime) -> list[ClientBacklog]:
        """Per client with anything waiting: conversations due by `now` (and the earliest due_at), conversations
        needing attention, effects pending."""

    async def applied_migrations(self) -> set[str]:
        """The migration versions recorded as applied (PostgreSQL only: SQLite makes its schema when it opens)."""


class Store(InboundStore, TurnStore, OperatorStore, ClientDataStore, EffectStore, ObservabilityStore, Protocol):
    """Everything the service keeps; each module asks only for the role it uses."""

    async def open(self) -> None:
        """Connect; SQLite creates its schema when missing, Postgres refuses a database not migrated yet."""

    async def close(self) -> None: ...

