"""Retention on both databases: content older than a client's retention is emptied, recent content and every
count stay; a client's own RETENTION_DAYS wins; archived files go; one process of several runs the daily job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.ops.retention import PurgeCounts, RetentionJob, purge, retentions
from core.storage.base import Store
from core.storage.media import LocalMediaArchive, MediaArchive
from tests.fakes.clock import ManualClock
from tests.retention_data import seed_person

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RECENT = T0 + timedelta(days=20)
NOW = RECENT + timedelta(hours=1)


@pytest.fixture
def archive(tmp_path: Path) -> LocalMediaArchive:
    return LocalMediaArchive(tmp_path / "media")


async def rows(store: Store, sql: str, *args: Any) -> list[dict[str, Any]]:
    found = await store.database.read(lambda tx: tx.fetch(sql, *args))  # type: ignore[attr-defined]
    return [dict(row) for row in found]


async def messages(store: Store, conversation_id: int) -> list[Any]:
    return await store.list_messages(conversation_id, 100, 0)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll an outcome of background work, up to `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class TestPurge:
    async def test_old_content_goes_recent_content_and_counts_stay(self, store: Store, archive: LocalMediaArchive,
                                                                   tmp_path: Path):
        old = await seed_person(store, archive, "demo", wa_id="5491100000001", tag="old", at=T0)
        recent = await seed_person(store, archive, "demo", wa_id="5491100000001", tag="new", at=RECENT)
        assert old.conversation_id == recent.conversation_id  # an active person: one conversation, old and new
        before = await messages(store, old.conversation_id)
        conversation_before = await store.get_conversation("demo", old.conversation_id)

        report = await purge(store, archive, retentions({"demo": None}, 14), NOW, batch=2)

        after = await messages(store, old.conversation_id)
        assert [(m.id, m.direction, m.role, m.type, m.status, m.created_at, m.processed_at, m.batch_id,
                 m.prompt_tokens, m.completion_tokens, m.wamid) for m in after] == \
            [(m.id, m.direction, m.role, m.type, m.status, m.created_at, m.processed_at, m.batch_id,
              m.prompt_tokens, m.completion_tokens, m.wamid) for m in before]
        old_ones = [m for m in after if m.created_at < RECENT]
        new_ones = [m for m in after if m.created_at >= RECENT]
        assert len(old_ones) == 3 and len(new_ones) == 3
        assert all(m.text is None and m.payload is None and m.error is None and m.media_path is None for m in old_ones)
        assert [m.text for m in new_ones] == [m.text for m in before if m.created_at >= RECENT]
        assert all(m.text for m in new_ones)
        assert not (tmp_path / "media" / old.media_path).exists()
        assert (tmp_path / "media" / recent.media_path).read_bytes()
        conversation = await store.get_conversation("demo", old.conversation_id)
        assert (conversation.prompt_tokens, conversation.completion_tokens) == \
            (conversation_before.prompt_tokens, conversation_before.completion_tokens) == (240, 60)

        statuses = await rows(store, "SELECT wamid, status, payload FROM message_statuses ORDER BY wamid")
        payloads = {row["wamid"]: store.database.dialect.json(row["payload"]) for row in statuses}  # type: ignore[attr-defined]
        assert payloads["wamid.old.out"] == {} and payloads["wamid.new.out"]["recipient_id"] == "5491100000001"
        effects = await store.list_effects("demo", old.conversation_id)
        assert [(e.status, e.data) for e in effects][0] == ("done", {})
        assert effects[1].data["body"] == "Call 5491100000001: Ana"
        # Leads are the business's records: retention keeps them (erasure removes them).
        assert len(await store.list_records("demo", "lead", 10, 0)) == 2

        assert report == {"demo": PurgeCounts(messages=3, media_files=1, status_reports=1, effects=1)}
        again = await purge(store, archive, retentions({"demo": None}, 14), NOW, batch=2)
        assert again == {"demo": PurgeCounts()}

    async def test_a_clients_own_retention_wins_and_zero_keeps_forever(self, store: Store, archive: LocalMediaArchive):
        short = await seed_person(store, archive, "demo", wa_id="5491100000002", tag="d", at=T0)
        longer = await seed_person(store, archive, "emprendemy", wa_id="5491100000002", tag="e", at=T0,
                                   phone="2002")
        forever = await seed_person(store, archive, "keeper", wa_id="5491100000002", tag="k", at=T0, phone="2003")
        gone = await seed_person(store, archive, "retired", wa_id="5491100000002", tag="r", at=T0, phone="2004")

        # emprendemy keeps 30 days, keeper forever; "retired" has no folder any more: the global default applies.
        policies = retentions({"demo": None, "emprendemy": 30, "keeper": 0}, 14, await store.stored_clients())
        report = await purge(store, archive, policies, NOW)

        assert set(report) == {"demo", "emprendemy", "retired"}
        assert all(m.text is None for m in await messages(store, short.conversation_id))
        assert all(m.text is None for m in await messages(store, gone.conversation_id))
        assert all(m.text for m in await messages(store, longer.conversation_id))
        assert all(m.text for m in await messages(store, forever.conversation_id))
        assert report["emprendemy"] == PurgeCounts()

        later = await purge(store, archive, policies, T0 + timedelta(days=31))
        assert later["emprendemy"].messages == 3
        assert all(m.text for m in await messages(store, forever.conversation_id))

    async def test_an_unanswered_message_keeps_its_content_until_its_turn(self, store: Store,
                                                                          archive: LocalMediaArchive):
        from core.webhook.events import InboundMessage
        from tests.retention_data import DEBOUNCE

        waiting = InboundMessage(waba_id="1001", phone_number_id="2001", wamid="wamid.wait", user_key="5491100000003",
                                 wa_id="5491100000003", user_id=None, contact_name="Bo", type="text",
                                 text="still waiting", wa_timestamp=T0, payload={"type": "text"})
        result = await store.record_inbound("demo", waiting, DEBOUNCE, T0)
        await purge(store, archive, retentions({"demo": None}, 14), NOW)
        assert [m.text for m in await messages(store, result.conversation_id)] == ["still waiting"]

    async def test_files_the_archive_cannot_remove_wait_for_the_next_run(self, store: Store,
                                                                         archive: LocalMediaArchive, tmp_path: Path):
        seeded = await seed_person(store, archive, "demo", wa_id="5491100000004", tag="f", at=T0)

        class Down(LocalMediaArchive):
            async def remove(self, paths):  # type: ignore[no-untyped-def]
                raise OSError("storage unreachable")

        report = await purge(store, Down(tmp_path / "media"), retentions({"demo": None}, 14), NOW)
        assert report["demo"].media_failures == 1 and report["demo"].messages == 3
        [image] = [m for m in await messages(store, seeded.conversation_id) if m.type == "image"]
        assert image.text is None and image.media_path == seeded.media_path  # content gone, the file still known

        report = await purge(store, archive, retentions({"demo": None}, 14), NOW)
        assert report["demo"].media_files == 1
        assert not (tmp_path / "media" / seeded.media_path).exists()


class TestDailyJob:
    async def test_one_process_runs_the_days_purge_and_another_the_next_days(self, store: Store,
                                                                            archive: MediaArchive):
        seeded = await seed_person(store, archive, "demo", wa_id="5491100000005", tag="j", at=T0)
        clock = ManualClock(T0 + timedelta(days=15))
        first = RetentionJob(store, archive, {"demo": None}, 14, clock, "process-a")
        second = RetentionJob(store, archive, {"demo": None}, 14, clock, "process-b")

        await first.tick()
        await second.tick()
        assert first.running or await _emptied(store, seeded.conversation_id)
        assert not second.running  # the day's run is the first's
        await eventually(lambda: _emptied(store, seeded.conversation_id), "the purge to empty the old messages")
        await eventually(lambda: _finished(store), "the run to be recorded as finished")

        later = await seed_person(store, archive, "demo", wa_id="5491100000006", tag="l", at=T0 + timedelta(days=2))
        clock.advance(timedelta(hours=2).total_seconds())
        await first.tick()
        await second.tick()
        assert not first.running and not second.running  # within the day: nobody runs it again
        clock.advance(timedelta(days=1).total_seconds())
        await second.tick()
        await eventually(lambda: _emptied(store, later.conversation_id), "the next day's purge")
        [job] = await rows(store, "SELECT owner FROM scheduled_jobs WHERE name = 'retention'")
        assert job["owner"] == "process-b"

    async def test_nothing_to_do_when_everything_is_kept_forever(self, store: Store, archive: MediaArchive):
        job = RetentionJob(store, archive, {"demo": 0}, 0, ManualClock(T0), "process-a")
        await job.tick()
        assert not job.running
        assert await rows(store, "SELECT * FROM scheduled_jobs") == []


async def _emptied(store: Store, conversation_id: int) -> bool:
    return all(m.text is None for m in await messages(store, conversation_id))


async def _finished(store: Store) -> bool:
    found = await rows(store, "SELECT finished_at FROM scheduled_jobs WHERE name = 'retention'")
    return bool(found) and found[0]["finished_at"] is not None


async def test_old_files_leave_the_supabase_bucket(store: Store):
    from tests.fakes.server import serve
    from tests.fakes.storage import FakeStorage
    from core.storage.media import SupabaseMediaArchive

    fake = FakeStorage()
    with serve(fake.app) as url:
        archive = SupabaseMediaArchive(url, "service-key", "media")
        try:
            old = await seed_person(store, archive, "demo", wa_id="5491100000007", tag="s1", at=T0)
            recent = await seed_person(store, archive, "demo", wa_id="5491100000007", tag="s2", at=RECENT)
            report = await purge(store, archive, retentions({"demo": None}, 14), NOW)
        finally:
            await archive.aclose()
    assert report["demo"].media_files == 1
    assert [f"media/{name}" for name in fake.names("media")] == [recent.media_path]
    assert old.media_path != recent.media_path
