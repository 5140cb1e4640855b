"""The Store protocol: everything the service keeps, behind one small interface per adapter."""

from __future__ import annotations

from datetime import date, datetime
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
    ModelUsage,
    NewMessage,
    StoredMessage,
    TurnInputs,
    UsageGrouping,
    UsageRow,
)
from core.storage.broadcast_records import Broadcast, BroadcastCounts, Contact, ContactChange, ContactQuery, Recipient
from core.storage.accounts import ConsoleRole, ConsoleUser, LoginScope
from core.storage.admin_records import ClientFacts
from core.storage.retention_records import ContactData, Erasure, ExpiredMessage
from core.webhook.echoes import EchoMessage
from core.webhook.events import InboundMessage, StatusUpdate
from core.whatsapp.templates import Template


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
                        now: datetime, intents: Sequence[Intent] = (),
                        usage: Sequence[ModelUsage] = ()) -> list[StoredMessage]:
        """Atomically mark the batch answered and store what the turn produced and decided, adding its tokens
        (and its model calls, `usage`, to the usage ledger on `now`'s UTC day).

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

    async def count_failure(self, claim: Claim, prompt_tokens: int, completion_tokens: int,
                            usage: Sequence[ModelUsage] = (), now: datetime | None = None) -> int:
        """One more failed attempt at the pending batch (its tokens added to the totals, its model calls to the
        usage ledger on `now`'s day); returns how many so far.

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


class UsageStore(Protocol):
    """The usage ledger's sums: what a client's bots did and spent, by UTC day, conversation or in all."""

    async def usage(self, client: str, first: date, last: date, by: UsageGrouping,
                    conversation_id: int | None = None) -> list[UsageRow]:
        """Per group (`by`) and model, the ledger's sums over the UTC days `first` to `last` (both included), of
        one conversation when `conversation_id` is given."""


class RetentionStore(Protocol):
    """Retention (content past a client's retention emptied, rows and counts kept) and erasing one person."""

    async def claim_job(self, name: str, owner: str, now: datetime, not_since: datetime) -> bool:
        """Take the next run of a periodic job unless a run started after `not_since`; one process wins."""

    async def finish_job(self, name: str, owner: str, now: datetime) -> None:
        """Note that `owner`'s run of the job ended."""

    async def stored_clients(self) -> list[str]:
        """Every client with a conversation in the store."""

    async def expired_messages(self, client: str, before: datetime, after: tuple[datetime, int] | None,
                               limit: int) -> list[ExpiredMessage]:
        """Up to `limit` of the client's settled messages created before `before` that still hold content, in
        (created_at, id) order after the cursor `after`."""

    async def clear_messages(self, ids: Sequence[int], *, media: bool) -> int:
        """Empty text, payload and error of these messages (and media_path when their files are gone)."""

    async def clear_status_payloads(self, client: str, before: datetime, limit: int) -> int:
        """Empty the payload of up to `limit` of the client's status reports recorded before `before`."""

    async def clear_effect_data(self, client: str, before: datetime, limit: int) -> int:
        """Empty data and last error of up to `limit` of the client's settled effects created before `before`."""

    async def contact_data(self, client: str, user_key: str) -> ContactData:
        """One person's conversations with the client (by user key, wa_id or user_id) and their archived files."""

    async def erase_contact(self, client: str, user_key: str) -> Erasure:
        """Delete, in one transaction, the person's conversations with the client and every row that refers to
        them (messages, status reports, records, effects); tables in ANONYMISE_ON_ERASE lose the reference."""


class ConsoleStore(Protocol):
    """The console's accounts and its failed logins (kept in the store, so every web process counts the same)."""

    async def add_console_user(self, email: str, password_hash: str, role: ConsoleRole, client: str | None,
                               now: datetime) -> ConsoleUser | None:
        """Create an account (email stored lower case); None when the email is taken."""

    async def get_console_user(self, user_id: int) -> ConsoleUser | None: ...

    async def find_console_user(self, email: str) -> ConsoleUser | None:
        """The account of an email, any case."""

    async def list_console_users(self) -> list[ConsoleUser]:
        """Every account, by email."""

    async def remove_console_user(self, email: str) -> bool:
        """Delete an account; False when there was none."""

    async def count_console_users(self) -> int: ...

    async def add_login_failure(self, keys: dict[LoginScope, str], now: datetime, forget_before: datetime) -> None:
        """Count a failed login against each key (an email, an address); failures before `forget_before` go."""

    async def count_login_failures(self, scope: LoginScope, key: str, since: datetime) -> int:
        """Failed logins of one email or address at or after `since`."""

    async def clear_login_failures(self, scope: LoginScope, key: str) -> None:
        """Forget an email's failures (after it logged in)."""


class TemplateStore(Protocol):
    """A client's WhatsApp message templates, as the last sync and the template webhooks left them."""

    async def replace_templates(self, client: str, templates: Sequence[Template], now: datetime) -> None:
        """Make the client's stored templates exactly these (a full sync): new ones added, gone ones removed."""

    async def update_template(self, client: str, name: str, language: str, now: datetime, *,
                              status: str | None = None, quality: str | None = None,
                              category: str | None = None) -> bool:
        """Change what a template webhook reports of one template; False when it is not stored (sync it)."""

    async def list_templates(self, client: str) -> list[Template]:
        """The client's templates by name and language."""

    async def get_template(self, client: str, name: str, language: str) -> Template | None: ...

    async def approved_templates(self, client: str) -> list[str]:
        """The client's approved templates as "name (language)": what can reopen a closed 24 h window."""


class EchoStore(Protocol):
    """What staff send from the WhatsApp Business app (coexistence), kept in the conversation."""

    async def record_echo(self, client: str, echo: EchoMessage, now: datetime) -> int | None:
        """Store an echoed message once (keyed on wamid) as an operator's sent message, creating the conversation
        if needed; its conversation id, or None when it was already stored. It does not make the bot answer."""


class ObservabilityStore(Protocol):
    """What /metrics and /ready read: the backlog waiting per client, and the migrations applied."""

    async def backlog(self, now: datetime) -> list[ClientBacklog]:
        """Per client with anything waiting: conversations due by `now` (and the earliest due_at), conversations
        needing attention, effects pending."""

    async def applied_migrations(self) -> set[str]:
        """The migration versions recorded as applied (PostgreSQL only: SQLite makes its schema when it opens)."""


class RichStore(Protocol):
    """Rich outgoing messages (core/whatsapp/rich.py): what the outbox records when one goes out as its text."""

    async def record_fallback(self, message_id: int, payload: dict[str, Any]) -> None:
        """Replace a pending message's payload with one that says its text goes instead, and why."""


class OutboxStore(Sends, RichStore, Protocol):
    """What the outbox writes: each part's outcome, flags, and rich messages' fallbacks."""


class ContactStore(Protocol):
    """The people who wrote to a client (read from their conversations) and what staff keep of them."""

    async def list_contacts(self, client: str, query: ContactQuery, limit: int, offset: int) -> list[Contact]:
        """The client's contacts matching `query`, the most recent writers first."""

    async def get_contact(self, client: str, user_key: str) -> Contact | None: ...

    async def update_contact(self, client: str, user_key: str, change: ContactChange, now: datetime) -> Contact | None:
        """Change the fields `change` names; None when the person never wrote to the client."""

    async def opt_out_turn(self, claim: Claim, batch: Sequence[StoredMessage], batch_id: str, reply: NewMessage,
                           now: datetime) -> list[StoredMessage]:
        """Close a batch holding an opt-out keyword: opted out, and `reply` stored (pending, returned) only when
        this opted them out. Raises LeaseLost when the claim no longer holds the conversation."""


class BroadcastStore(Sends, Protocol):
    """Broadcast jobs and their recipients, claimed in batches under a lease."""

    async def create_broadcast(self, client: str, phone_number_id: str, template: str, language: str,
                               parameters: Any, audience: dict[str, Any], at: datetime, now: datetime) -> Broadcast | None:
        """Store a broadcast and its recipients (the audience resolved now), due at `at`."""

    async def get_broadcast(self, client: str, broadcast_id: int) -> Broadcast | None: ...

    async def list_broadcasts(self, client: str, limit: int, offset: int) -> list[Broadcast]: ...

    async def broadcast_counts(self, broadcast_id: int) -> BroadcastCounts: ...

    async def cancel_broadcast(self, client: str, broadcast_id: int, now: datetime) -> Broadcast | None: ...

    async def next_broadcast_due(self) -> datetime | None: ...

    async def due_broadcasts(self, now: datetime, limit: int) -> list[Broadcast]: ...

    async def claim_recipients(self, broadcast_id: int, owner: str, now: datetime, lease_seconds: float,
                               limit: int, *, rate_per_second: float | None = None) -> list[Recipient]: ...

    async def book_send_slots(self, phone_number_id: str, count: int, now: datetime,
                              rate_per_second: float) -> list[datetime]: ...

    async def prepare_recipient(self, broadcast: Broadcast, recipient: Recipient, message: NewMessage | None,
                                now: datetime) -> StoredMessage | None: ...

    async def record_recipient(self, recipient_id: int, message_id: int, wamid: str | None, status: str,
                               error: dict[str, Any] | None, now: datetime) -> None: ...

    async def release_recipients(self, recipient_ids: Sequence[int], owner: str, now: datetime) -> None: ...

    async def pause_broadcast(self, broadcast_id: int, until: datetime, error: str, now: datetime) -> int: ...

    async def broadcast_progressed(self, broadcast_id: int, now: datetime) -> None: ...

    async def get_template(self, client: str, name: str, language: str) -> Template | None: ...


class PlaygroundStore(Protocol):
    """Edited system prompts tried in the console's playground: kept per tester conversation, never the client's."""

    async def set_playground_prompt(self, client: str, user_key: str, instructions: str, now: datetime) -> None:
        """Answer the playground conversation of `user_key` (on the client's sandbox number) with `instructions`."""

    async def playground_prompt(self, client: str, user_key: str) -> str | None:
        """The prompt under trial in that playground conversation; None: the client's own prompt answers."""

class DashboardStore(Protocol):
    """What the console's client dashboard counts beyond the usage ledger."""

    async def count_bot_replies(self, client: str, texts: Sequence[str], since: datetime, until: datetime) -> int:
        """The bot's outbound messages stored in [since, until) whose text is one of `texts` (e.g. the fallback)."""

class AdminStore(Protocol):
    """What the console's admin page reads of each client's health."""

    async def client_facts(self, client: str, since: datetime, overdue_before: datetime) -> ClientFacts:
        """The client's failed sends and effects since `since` (and the last of each, ever), the conversations due
        before `overdue_before` and the ones flagged now."""

class ReadsStore(Protocol):
    """What each console account has seen of each conversation: the inbox's unread counts."""

    async def mark_seen(self, user_id: int, conversation_id: int, seen_at: datetime) -> None:
        """The account saw the conversation's messages stored up to `seen_at` (never moves backwards)."""

    async def unread_counts(self, user_id: int, conversation_ids: Sequence[int]) -> dict[int, int]:
        """Per conversation (only those with any), the messages in stored after the account last saw it."""

class PreferencesStore(Protocol):
    """What each console account chose for itself."""

    async def set_console_language(self, user_id: int, language: str, now: datetime) -> None:
        """The console's language for this account (en, es), used from its next page on."""

    async def console_language(self, user_id: int) -> str | None:
        """The account's chosen language; None: the browser's Accept-Language decides."""


class ContactTagsStore(Protocol):
    """The tags of a page of people at once: the console's inbox rows."""

    async def tags_of(self, client: str, user_keys: Sequence[str]) -> dict[str, list[str]]:
        """Per user key (only those with any), the client's tags of that person in alphabetical order."""


class Store(InboundStore, TurnStore, OperatorStore, ClientDataStore, EffectStore, UsageStore, RetentionStore,
            ConsoleStore, TemplateStore, EchoStore, ObservabilityStore, OutboxStore, ContactStore, BroadcastStore,
            PlaygroundStore, DashboardStore, AdminStore, ReadsStore, PreferencesStore, ContactTagsStore, Protocol):
    """Everything the service keeps; each module asks only for the role it uses."""

    async def open(self) -> None:
        """Connect; SQLite creates its schema when missing, Postgres refuses a database not migrated yet."""

    async def close(self) -> None: ...


class AnsweringStore(TurnStore, ContactStore, Protocol):
    """What the processor uses: a turn's reads and writes, and the opt-out turn."""
