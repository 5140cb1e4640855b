"""The running server purges on its own: its scheduler's housekeeping claims the day's retention run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.storage.media import LocalMediaArchive
from core.storage.sqlite import SQLiteStore
from tests.conftest import DEMO
from tests.fakes.clock import ManualClock
from tests.retention_data import seed_person
from tests.support import wait_for

T0 = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)


def test_a_server_empties_content_past_the_clients_retention(start_app, tmp_db: str, tmp_path: Path,
                                                             monkeypatch):
    async def seed():
        store = SQLiteStore(Path(tmp_db.removeprefix("sqlite:///")))
        await store.open()
        try:
            archive = LocalMediaArchive(tmp_path / "media")
            return (await seed_person(store, archive, "demo", wa_id="5491100000101", tag="a", at=T0),
                    await seed_person(store, archive, "demo", wa_id="5491100000102", tag="b",
                                      at=T0 + timedelta(days=9)))
        finally:
            await store.close()

    old, recent = asyncio.run(seed())
    monkeypatch.setenv("DEMO_RETENTION_DAYS", "7")
    app = start_app(DEMO.env(), clock=ManualClock(T0 + timedelta(days=10)))

    wait_for(lambda: all(m["text"] is None for m in app.messages(DEMO, "5491100000101")),
             what="the daily purge to empty the week-old conversation")
    assert not (tmp_path / "media" / old.media_path).exists()
    assert all(m["text"] for m in app.messages(DEMO, "5491100000102"))
    assert (tmp_path / "media" / recent.media_path).exists()
    assert [m["prompt_tokens"] for m in app.messages(DEMO, "5491100000101")] == [0, 0, 120]
