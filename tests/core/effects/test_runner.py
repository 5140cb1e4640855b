"""The effects outbox: what a committed turn decided is carried out once, retried when the world says "later",
and never lost by a process that dies; on a real store (SQLite and PostgreSQL) and a real SMTP server."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.clients import ClientRegistry
from core.effects.runner import EffectRunner
from core.notify.email import Email, SmtpMailer
from core.storage.base import Store
from core.storage.postgres import PostgresStore
from core.storage.records import Debounce, Intent, NewMessage
from core.storage.sqlite import SQLiteStore
from core.webhook.events import InboundMessage
from tests.core.notify.smtp_server import Mailbox, closed_port, smtp_server
from tests.fakes.clock import ManualClock
from tests.unit.fakes import make_client

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = SQLiteStore(tmp_path / "store.db") if request.param == "sqlite" else \
        PostgresStore(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


def registry_for(port: int) -> ClientRegistry:
    client = make_client(smtp=True)
    settings = client.settings.model_copy(update={"smtp_port": port, "smtp_security": "none"})
    return ClientRegistry([type(client)(**{**client.__dict__, "settings": settings})])


async def a_turn_with_emails(store: Store, *subjects: str, batch_id: str = "batch-1") -> int:
    """Store one answered turn whose tools decided these staff emails; returns the conversation id."""
    message = InboundMessage(waba_id="1001", phone_number_id="2001", wamid=f"wamid.{batch_id}", user_key="549",
                             wa_id="549", user_id=None, contact_name="Ana", type="text", text="hola", wa_timestamp=T0,
                             payload={})
    result = await store.record_inbound("demo", message, Debounce(0, 0), T0)
    [claim] = await store.claim_due("turn", T0, 60, 1)
    batch = await store.pending_batch(result.conversation_id)
    intents = [Intent("email", f"call_{n}:1", {"subject": subject, "body": "cuerpo", "reply_to": "ana@example.com"})
               for n, subject in enumerate(subjects)]
    reply = NewMessage(direction="out", role="assistant", text="listo", status="pending")
    await store.save_turn(claim, batch, batch_id, [reply], T0, intents)
    await store.finish_turn(claim, T0)
    return result.conversation_id


def runner(store: Store, registry: ClientRegistry, clock: ManualClock, *, owner: str = "runner-a",
           mailer: object | None = None, attempts: int = 3) -> EffectRunner:
    return EffectRunner(store, registry, mailer or SmtpMailer(), clock, owner=owner, lease_seconds=30,
                        attempts=attempts, base_seconds=10, max_wait_seconds=60)


class TestOnce:
    async def test_an_email_decided_by_a_turn_is_sent_once_with_a_stable_message_id(self, store: Store):
        clock = ManualClock(T0)
        mailbox = Mailbox()
        with smtp_server(mailbox) as port:
            conversation_id = await a_turn_with_emails(store, "Nuevo lead: Ana")
            work = runner(store, registry_for(port), clock)
            assert await work.run_due() == 1
            assert await work.run_due() == 0  # done: nothing due any more
        [received] = mailbox.received
        assert received.message["Subject"] == "Nuevo lead: Ana"
        assert received.message["Reply-To"] == "ana@example.com"
        [effect] = await store.list_effects("demo", conversation_id)
        assert (effect.status, effect.attempts, effect.done_at) == ("done", 1, T0)
        assert received.message["Message-ID"] == f"<effect-{effect.id}.batch-1@demo.whatsapp-bot>"

    async def test_the_same_batch_and_key_stored_twice_is_one_effect(self, store: Store):
        conversation_id = await a_turn_with_emails(store, "uno", "dos")
        effects = await store.list_effects("demo", conversation_id)
        assert [(e.key, e.data["subject"]) for e in effects] == [("call_0:1", "uno"), ("call_1:1", "dos")]

    async def test_two_runners_at_once_send_each_email_once(self, store: Store):
        clock = ManualClock(T0)
        mailbox = Mailbox()
        with smtp_server(mailbox) as port:
            await a_turn_with_emails(store, *(f"lead {n}" for n in range(8)))
            registry = registry_for(port)
            first, second = runner(store, registry, clock, owner="a"), runner(store, registry, clock, owner="b")
            done = await asyncio.gather(first.run_due(), second.run_due())
        assert sum(done) == 8
        assert sorted(r.message["Subject"] for r in mailbox.received) == sorted(f"lead {n}" for n in range(8))

    async def test_an_effect_held_by_a_dead_process_is_sent_after_its_lease(self, store: Store):
        clock = ManualClock(T0)
        mailbox = Mailbox()
        with smtp_server(mailbox) as port:
            await a_turn_with_emails(store, "huérfano")
            [held] = await store.claim_effects("dead-process", clock.now(), 30, 10)  # then it died
            work = runner(store, registry_for(port), clock)
            assert await work.run_due() == 0  # still leased
            clock.advance(31)
            assert await work.run_due() == 1
        assert [r.message["Subject"] for r in mailbox.received] == ["huérfano"]
        assert not await store.settle_effect(held, "dead-process", clock.now())  # its late word changes nothing


class TestRetries:
    async def test_a_server_that_says_later_twice_gets_it_the_third_time_after_backoff(
            self, store: Store, caplog: pytest.LogCaptureFixture):
        clock = ManualClock(T0)
        mailbox = Mailbox(refuse=2)
        with caplog.at_level(logging.INFO, logger="core.effects"), smtp_server(mailbox) as port:
            conversation_id = await a_turn_with_emails(store, "Lead")
            work = runner(store, registry_for(port), clock)
            assert await work.run_due() == 1  # 451
            assert await work.run_due() == 0  # waits its backoff
            clock.advance(13)
            assert await work.run_due() == 1  # 451 again
            clock.advance(30)
            assert await work.run_due() == 1
        assert mailbox.data_commands == 3 and len(mailbox.received) == 1
        [effect] = await store.list_effects("demo", conversation_id)
        assert (effect.status, effect.attempts) == ("done", 3)
        retries = [r for r in caplog.records if r.getMessage() == "effects.retry"]
        assert [(r.client, r.conversation, r.attempt) for r in retries] == [("demo", conversation_id, 1),
                                                                           ("demo", conversation_id, 2)]

    async def test_a_server_down_for_good_fails_flags_the_conversation_and_logs_no_password(
            self, store: Store, caplog: pytest.LogCaptureFixture):
        clock = ManualClock(T0)
        registry = registry_for(closed_port())
        conversation_id = await a_turn_with_emails(store, "Lead")
        work = runner(store, registry, clock, attempts=2)
        with caplog.at_level(logging.INFO, logger="core.effects"):
            await work.run_due()
            clock.advance(60)
            await work.run_due()
            clock.advance(600)
            assert await work.run_due() == 0
        [effect] = await store.list_effects("demo", conversation_id)
        assert (effect.status, effect.attempts, effect.due_at) == ("failed", 2, None)
        assert "ConnectionRefusedError" in effect.last_error
        [failure] = [r for r in caplog.records if r.getMessage() == "effects.failed"]
        assert (failure.levelno, failure.client, failure.conversation) == (logging.ERROR, "demo", conversation_id)
        conversation = await store.get_conversation("demo", conversation_id)
        assert conversation.needs_attention and "staff email" in conversation.attention_reason

    async def test_a_final_refusal_is_not_retried(self, store: Store):
        class Refusing:
            async def send(self, email: Email) -> dict:
                raise smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials")

        clock = ManualClock(T0)
        conversation_id = await a_turn_with_emails(store, "Lead")
        assert await runner(store, registry_for(1), clock, mailer=Refusing()).run_due() == 1
        [effect] = await store.list_effects("demo", conversation_id)
        assert (effect.status, effect.attempts) == ("failed", 1)

