"""Erasing one person: nothing of theirs with that client remains in any table of the schema (found generically,
so a table added later is covered) nor in the media folder or bucket, on SQLite and PostgreSQL; another client's
copy of the same person, and other people, stay. Through the store, the REST API and `python -m core erase`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli import main
from core.contacts.erasure import MediaNotRemoved, erase_contact
from core.storage.base import Store
from core.storage.media import LocalMediaArchive, MediaArchive, SupabaseMediaArchive
from core.storage.postgres import PostgresStore
from core.storage.sqlite import SQLiteStore
from tests.conftest import EMPRENDEMY
from tests.fakes.server import serve
from tests.fakes.storage import FakeStorage
from tests.retention_data import PHOTO, Seeded, seed_person
from tests.support import text_delivery, wait_for

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ERIN = "5491100000777"
ERIN_ID = "US.13491208655302741918"
NAME = "Erin Erasmus"


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    fake = FakeStorage()
    with serve(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(params=["folder", "bucket"])
async def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "folder":
        yield LocalMediaArchive(tmp_path / "media")
        return
    fake: FakeStorage = request.getfixturevalue("storage")
    bucket = SupabaseMediaArchive(fake.url, "service-key", "media")  # type: ignore[attr-defined]
    yield bucket
    await bucket.aclose()


def archived(archive: MediaArchive, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Every file in the archive, named as `save` returned it."""
    if isinstance(archive, LocalMediaArchive):
        root = tmp_path / "media"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return [f"media/{name}" for name in request.getfixturevalue("storage").names("media")]


async def all_rows(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the schema, whatever tables it has now."""
    database = store.database  # type: ignore[attr-defined]
    if isinstance(store, PostgresStore):
        tables_sql = ("SELECT table_name AS name FROM information_schema.tables "
                      "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    else:
        tables_sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    tables = [row["name"] for row in await database.read(lambda tx: tx.fetch(tables_sql))]
    assert {"conversations", "messages", "message_statuses", "client_records", "effects"} <= set(tables)
    found = {}
    for table in tables:
        found[table] = [dict(row) for row in await database.read(lambda tx, t=table: tx.fetch(f'SELECT * FROM "{t}"'))]
    return found


def leftovers(tables: dict[str, list[dict[str, Any]]], needles: list[str], erased_ids: set[int],
              kept_client: str, kept_ids: set[int]) -> list[tuple[str, dict[str, Any]]]:
    """Rows that still name the erased person (a key, a wamid, a file) or point at an erased conversation, except
    those of the client that keeps its own copy."""
    left = []
    for table, rows in tables.items():
        for row in rows:
            conversation = row.get("conversation_id", row.get("id") if table == "conversations" else None)
            points_at_erased = conversation in erased_ids
            names_them = any(needle in str(value) for value in row.values() for needle in needles)
            theirs_elsewhere = row.get("client") == kept_client or conversation in kept_ids
            if points_at_erased or (names_them and not theirs_elsewhere):
                left.append((table, row))
    return left


@pytest.mark.anyio
async def test_nothing_of_the_person_remains_in_any_table_or_archive(store: Store, archive: MediaArchive,
                                                                     request: pytest.FixtureRequest, tmp_path: Path):
    # Erin writes to two of demo's numbers (two conversations), once before and once after taking a username
    # (keyed by wa_id, then the business-scoped id alone); she also writes to emprendemy, and Olga writes to demo.
    mine = [await seed_person(store, archive, "demo", wa_id=ERIN, user_id=ERIN_ID, name=NAME, tag="d1", at=T0),
            await seed_person(store, archive, "demo", wa_id=ERIN, user_id=ERIN_ID, name=NAME, tag="d2",
                              at=T0 + timedelta(hours=1), phone="2009")]
    elsewhere = await seed_person(store, archive, "emprendemy", wa_id=ERIN, user_id=ERIN_ID, name=NAME, tag="e1",
                                  at=T0 + timedelta(hours=2), phone="2002")
    olga = await seed_person(store, archive, "demo", wa_id="5491100000888", name="Olga", tag="o1",
                             at=T0 + timedelta(hours=3))
    assert len(archived(archive, request, tmp_path)) == 4

    report = await erase_contact(store, archive, "demo", ERIN)

    assert report is not None
    assert (report.conversations, report.messages, report.status_reports, report.records, report.effects,
            report.media_files) == (2, 6, 2, 2, 2, 2)
    needles = [ERIN, ERIN_ID, NAME, *(w for s in mine for w in s.wamids), *(s.media_path for s in mine)]
    tables = await all_rows(store)
    erased = {s.conversation_id for s in mine}
    assert leftovers(tables, needles, erased, "emprendemy", {elsewhere.conversation_id}) == []
    # The check can see them: emprendemy's copy of Erin is still there, named, and so is Olga.
    assert leftovers(tables, needles, set(), "nobody", set())
    assert await store.get_conversation("emprendemy", elsewhere.conversation_id) is not None
    assert len(await store.list_messages(olga.conversation_id, 10, 0)) == 3
    assert archived(archive, request, tmp_path) == sorted([elsewhere.media_path, olga.media_path])
    assert await erase_contact(store, archive, "demo", ERIN) is None  # erased: unknown now


@pytest.mark.anyio
async def test_a_table_added_later_is_checked_and_anonymised_on_erase(store: Store, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    # As the usage ledger is: counts per conversation that outlive it, the conversation id taken away.
    import core.storage.sql_retention as sql_retention

    database = store.database  # type: ignore[attr-defined]
    await database.write(lambda tx: tx.execute(
        "CREATE TABLE ledger_probe (client TEXT NOT NULL, conversation_id BIGINT, tokens INTEGER NOT NULL)"))
    archive = LocalMediaArchive(tmp_path / "media")
    erin = await seed_person(store, archive, "demo", wa_id=ERIN, name=NAME, tag="l1", at=T0)
    olga = await seed_person(store, archive, "demo", wa_id="5491100000888", name="Olga", tag="l2", at=T0)
    for conversation_id in (erin.conversation_id, olga.conversation_id):
        await database.write(lambda tx, c=conversation_id: tx.execute(
            "INSERT INTO ledger_probe (client, conversation_id, tokens) VALUES ('demo', $1, 150)", c))
    monkeypatch.setitem(sql_retention.ANONYMISE_ON_ERASE, "ledger_probe",
                        "UPDATE ledger_probe SET conversation_id = NULL WHERE client = $1 AND conversation_id IN ({ids})")

    report = await erase_contact(store, archive, "demo", ERIN)

    assert report is not None and report.anonymised["ledger_probe"] == 1
    tables = await all_rows(store)
    assert leftovers(tables, [ERIN, *erin.wamids], {erin.conversation_id}, "nobody", set()) == []
    assert sorted((row["conversation_id"] or 0, row["tokens"]) for row in tables["ledger_probe"]) == \
        [(0, 150), (olga.conversation_id, 150)]  # the counts stay


@pytest.mark.anyio
async def test_the_check_finds_a_table_erasure_forgot(store: Store, tmp_path: Path):
    database = store.database  # type: ignore[attr-defined]
    await database.write(lambda tx: tx.execute("CREATE TABLE forgotten (client TEXT, conversation_id BIGINT)"))
    archive = LocalMediaArchive(tmp_path / "media")
    erin = await seed_person(store, archive, "demo", wa_id=ERIN, name=NAME, tag="g1", at=T0)
    await database.write(lambda tx: tx.execute("INSERT INTO forgotten VALUES ('demo', $1)", erin.conversation_id))
    await erase_contact(store, archive, "demo", ERIN)
    assert [table for table, _ in leftovers(await all_rows(store), [ERIN], {erin.conversation_id}, "x", set())] == \
        ["forgotten"]


@pytest.mark.anyio
async def test_by_business_scoped_id_alone(store: Store, tmp_path: Path):
    archive = LocalMediaArchive(tmp_path / "media")
    seeded = await seed_person(store, archive, "demo", wa_id=ERIN, user_id=ERIN_ID, name=NAME, tag="b1", at=T0)
    report = await erase_contact(store, archive, "demo", ERIN_ID)
    assert report is not None and report.conversations == 1
    assert await store.get_conversation("demo", seeded.conversation_id) is None


@pytest.mark.anyio
async def test_an_archive_that_fails_leaves_everything_to_try_again(tmp_path: Path, storage: FakeStorage):
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()
    archive = SupabaseMediaArchive(storage.url, "service-key", "media")  # type: ignore[attr-defined]
    try:
        seeded = await seed_person(store, archive, "demo", wa_id=ERIN, name=NAME, tag="f1", at=T0)
        storage.fail = True
        with pytest.raises(MediaNotRemoved, match="nothing was erased"):
            await erase_contact(store, archive, "demo", ERIN)
        assert await store.get_conversation("demo", seeded.conversation_id) is not None
        storage.fail = False
        report = await erase_contact(store, archive, "demo", ERIN)
        assert report is not None and report.media_files == 1 and storage.names("media") == []
        assert {auth for _, auth in storage.requests} == {"Bearer service-key"}
    finally:
        await archive.aclose()
        await store.close()


# ---------------------------------------------------------------- the REST API and the command


def photo_delivery(wa_id: str) -> dict[str, Any]:
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, wa_id, "")
    message = delivery["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="image", image={"id": "media-photo-1", "mime_type": "image/png", "caption": "my receipt"})
    return delivery


def delete(app: Any, user_key: str, key: str | None = None) -> httpx.Response:
    return app.http.delete(f"{app.url}/api/v1/{EMPRENDEMY.name}/contacts/{user_key}",
                           headers={"Authorization": f"Bearer {key or EMPRENDEMY.api_key}"})


def test_delete_contact_through_the_api(start_app, graph, llm, tmp_path: Path):
    graph.media["media-photo-1"] = (PHOTO, "image/png")
    app = start_app(EMPRENDEMY.env(), openai_api_key="sk-test", openai_base_url=llm.url,
                    whatsapp_api_base_url=graph.url, media_archive_dir=tmp_path / "archive")
    for wa_id in ("5491155550301", "5491155550302"):
        assert app.post_webhook(photo_delivery(wa_id), EMPRENDEMY.secret).status_code == 200
        wait_for(lambda w=wa_id: app.settled(EMPRENDEMY, w), what="the turn to end")
    assert len(list((tmp_path / "archive").rglob("*.png"))) == 2

    assert delete(app, "5491155550301", key="wrong").status_code == 401
    response = delete(app, "5491155550301")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversations"] == 1 and body["media_files"] == 1 and body["messages"] >= 2
    assert app.conversation(EMPRENDEMY, "5491155550301") is None
    assert app.conversation(EMPRENDEMY, "5491155550302") is not None
    assert len(list((tmp_path / "archive").rglob("*.png"))) == 1
    missing = delete(app, "5491155550301")
    assert missing.status_code == 404 and "no contact" in missing.json()["detail"]


def test_erase_and_purge_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    import asyncio

    monkeypatch.chdir(tmp_path)
    database = tmp_path / "app.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("MEDIA_ARCHIVE_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("DEMO_RETENTION_DAYS", "3")

    async def seed() -> list[Seeded]:
        store = SQLiteStore(database)
        await store.open()
        archive = LocalMediaArchive(tmp_path / "media")
        try:
            # A week old: past demo's 3 days, within the default 14 days of emprendemy.
            at = datetime.now(UTC) - timedelta(days=7)
            return [await seed_person(store, archive, "demo", wa_id=ERIN, name=NAME, tag="c1", at=at),
                    await seed_person(store, archive, "emprendemy", wa_id=ERIN, name=NAME, tag="c2", at=at,
                                      phone="2002")]
        finally:
            await store.close()

    demo, emprendemy = asyncio.run(seed())

    assert main(["purge"]) == 0
    out = capsys.readouterr().out
    assert "demo (kept 3 days): 3 message(s) emptied, 1 media file(s) removed" in out
    assert "emprendemy (kept 14 days): 0 message(s) emptied" in out
    assert not (tmp_path / "media" / demo.media_path).exists()
    assert (tmp_path / "media" / emprendemy.media_path).exists()

    assert main(["erase", "emprendemy", ERIN]) == 0
    assert "Erased 5491100000777 from emprendemy: 1 conversation(s), 3 message(s)" in capsys.readouterr().out
    assert not (tmp_path / "media" / emprendemy.media_path).exists()
    assert main(["erase", "emprendemy", ERIN]) == 1
    assert "keeps nothing about" in capsys.readouterr().err
    assert main(["erase", "Not A Client", ERIN]) == 2


def test_the_commands_say_when_the_store_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture):
    monkeypatch.chdir(tmp_path)
    # A port nothing listens on: the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    assert main(["erase", "demo", ERIN]) == 1
    assert "the store is unavailable, nothing was erased" in capsys.readouterr().err
    assert main(["purge"]) == 1
    assert "the store is unavailable, nothing was purged" in capsys.readouterr().err
