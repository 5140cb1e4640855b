"""Received media are archived where a front end can show them, and the message keeps the path."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.storage.media import archive_path
from core.storage.sqlite import SQLiteStore
from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import serve
from tests.support import text_delivery, wait_for

PHOTO = b"\x89PNG-fake-photo-bytes"


class FakeSupabaseStorage:
    """Supabase Storage's upload endpoint: POST /storage/v1/object/<bucket>/<path> (multipart)."""

    def __init__(self) -> None:
        self.uploads: list[dict[str, Any]] = []
        self.fail = False
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/storage/v1/object/{bucket}/{path:path}", self._upload, methods=["POST"])])

    async def _upload(self, request: Request) -> JSONResponse:
        if self.fail:
            return JSONResponse({"statusCode": "500", "error": "internal", "message": "storage down"}, status_code=500)
        form = await request.form()
        upload = form["file"]
        with self._lock:
            self.uploads.append({"bucket": request.path_params["bucket"], "path": request.path_params["path"],
                                 "content": await upload.read(), "content_type": upload.content_type,
                                 "authorization": request.headers.get("authorization"),
                                 "upsert": request.headers.get("x-upsert")})
        return JSONResponse({"Key": f"{request.path_params['bucket']}/{request.path_params['path']}", "Id": "1"})


@pytest.fixture
def storage() -> Iterator[FakeSupabaseStorage]:
    fake = FakeSupabaseStorage()
    with serve(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


def image_delivery(wa_id: str) -> tuple[dict[str, Any], str]:
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, wa_id, "")
    message = delivery["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="image", image={"id": "media-photo-1", "mime_type": "image/png", "caption": "mi comprobante"})
    return delivery, message["id"]


def start(start_app, graph: FakeGraph, llm: FakeOpenAI, **settings: Any):
    return start_app(EMPRENDEMY.env(), openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url, **settings)


def stored_image(app, wa_id: str) -> dict[str, Any]:
    return next(m for m in app.messages(EMPRENDEMY, wa_id) if m["type"] == "image")


def test_an_image_is_archived_in_the_local_folder_by_default(start_app, graph: FakeGraph, llm: FakeOpenAI,
                                                             tmp_path: Path):
    graph.media["media-photo-1"] = (PHOTO, "image/png")
    app = start(start_app, graph, llm, media_archive_dir=tmp_path / "archive")
    delivery, wamid = image_delivery("5491155550080")
    app.post_webhook(delivery, EMPRENDEMY.secret)
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155550080"), what="the turn to end")

    path = stored_image(app, "5491155550080")["media_path"]
    conversation_id = app.conversation(EMPRENDEMY, "5491155550080")["id"]
    assert path == archive_path("emprendemy", conversation_id, wamid, "image/png")
    assert path.startswith(f"emprendemy/{conversation_id}/{wamid}-") and path.endswith(".png")
    assert (tmp_path / "archive" / path).read_bytes() == PHOTO
    assert len(graph.texts()) == 1


def test_with_supabase_configured_images_go_to_the_bucket(start_app, graph: FakeGraph, llm: FakeOpenAI,
                                                          storage: FakeSupabaseStorage, tmp_path: Path):
    graph.media["media-photo-1"] = (PHOTO, "image/png")
    app = start(start_app, graph, llm, supabase_url=storage.url, supabase_service_key="service-key",
                supabase_media_bucket="media", media_archive_dir=tmp_path / "unused")
    delivery, wamid = image_delivery("5491155550081")
    app.post_webhook(delivery, EMPRENDEMY.secret)
    wait_for(lambda: app.settled(EMPRENDEMY, "5491155550081"), what="the turn to end")

    [upload] = storage.uploads
    conversation_id = app.conversation(EMPRENDEMY, "5491155550081")["id"]
    assert upload["bucket"] == "media"
    assert upload["path"] == archive_path("emprendemy", conversation_id, wamid, "image/png")
    assert upload["content"] == PHOTO and upload["content_type"] == "image/png"
    assert upload["authorization"] == "Bearer service-key"
    assert stored_image(app, "5491155550081")["media_path"] == f"media/{upload['path']}"
    assert not (tmp_path / "unused").exists()


def test_a_failing_archive_costs_no_reply(start_app, graph: FakeGraph, llm: FakeOpenAI, storage: FakeSupabaseStorage,
                                          caplog: pytest.LogCaptureFixture):
    storage.fail = True
    app = start(start_app, graph, llm, supabase_url=storage.url, supabase_service_key="service-key")
    with caplog.at_level(logging.WARNING):
        app.post_webhook(image_delivery("5491155550082")[0], EMPRENDEMY.secret)
        wait_for(lambda: app.settled(EMPRENDEMY, "5491155550082"), what="the turn to end")
    assert len(graph.texts()) == 1
    assert stored_image(app, "5491155550082")["media_path"] is None
    failure = next(r for r in caplog.records if r.getMessage() == "media.archive_failed")
    assert failure.client == "emprendemy" and failure.archive == "supabase"


@pytest.mark.anyio
async def test_an_older_sqlite_file_gets_the_new_column(tmp_path: Path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id INTEGER NOT NULL, "
                "wamid TEXT UNIQUE, direction TEXT NOT NULL, role TEXT NOT NULL, type TEXT NOT NULL, text TEXT, "
                "payload TEXT, status TEXT, error TEXT, wa_timestamp TEXT, batch_id TEXT, category TEXT, "
                "processed_at TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
                "completion_tokens INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)")
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(messages)")}
    assert "media_path" in columns
