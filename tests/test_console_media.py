"""Received files in the console, in a real browser: an image shown inline and a voice note with its player and
transcript, through the authenticated media endpoint (that client's staff only); and the Supabase archive's read."""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.storage.media import SupabaseMediaArchive
from tests.conftest import DEMO, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import serve
from tests.support import text_delivery, wait_for
from tests.test_console_browser import log_in



def _png(width: int = 1, height: int = 1) -> bytes:
    """A real PNG (RGBA, one colour), so the browser decodes it; built here rather than pasted as base64."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x33\x99\xff\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = _png()
WA_ID = "5491100000020"


@pytest.fixture
def console(start_app: Any, tmp_db: str, tmp_path: Any, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    return start_console(start_app, tmp_db, graph, llm, media_archive_dir=tmp_path / "archive")


def send_photo_and_voice_note(app: RunningApp, graph: FakeGraph) -> tuple[int, dict[str, int]]:
    """Ana sends a photo and a voice note; returns her conversation's id and the stored message ids by type."""
    graph.media["media-photo"] = (PNG, "image/png")
    graph.media["media-voice"] = (b"OggS-fake-voice", "audio/ogg")
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, WA_ID, "", name="Ana")
    value = delivery["entry"][0]["changes"][0]["value"]
    template = value["messages"].pop()
    del template["text"]
    value["messages"] = [
        {**template, "id": "wamid.photo", "type": "image", "image": {"id": "media-photo", "mime_type": "image/png"}},
        {**template, "id": "wamid.voice", "type": "audio",
         "audio": {"id": "media-voice", "mime_type": "audio/ogg; codecs=opus", "voice": True}}]
    assert app.post_webhook(delivery, DEMO.secret).status_code == 200
    wait_for(lambda: app.settled(DEMO, WA_ID), what="the turn")
    stored = {m["type"]: m["id"] for m in app.messages(DEMO, WA_ID) if m["direction"] == "in"}
    return app.conversation(DEMO, WA_ID)["id"], stored


def test_an_image_and_a_voice_note_are_shown_to_the_clients_staff_only(page: Page, console: RunningApp,
                                                                         graph: FakeGraph, llm: FakeOpenAI):
    conversation, ids = send_photo_and_voice_note(console, graph)
    log_in(page, "viewer@demo.example")  # staff who only read see the files too
    page.goto(f"/console/c/demo/conversations/{conversation}")
    image = page.get_by_test_id("message-media").locator("img")
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth === 1", arg=image.element_handle())
    voice = page.get_by_test_id("message").filter(has=page.locator("audio"))
    expect(voice).to_contain_text(f"[voice note] {llm.transcript}")
    expect(voice.locator("audio")).to_have_attribute("src", f"/console/c/demo/media/{ids['audio']}")
    answer = page.request.get(f"/console/c/demo/media/{ids['image']}")
    assert answer.status == 200 and answer.body() == PNG
    assert answer.headers["content-type"] == "image/png" and answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    assert page.request.get(f"/console/c/demo/media/{ids['audio']}").body() == b"OggS-fake-voice"
    page.context.clear_cookies()
    assert page.request.get(f"/console/c/demo/media/{ids['image']}").status == 401
    log_in(page, "op@emprendemy.example")
    for path in (f"/console/c/demo/media/{ids['image']}", f"/console/c/emprendemy/media/{ids['image']}"):
        refused = page.request.get(path)
        assert refused.status == 404 and refused.body() != PNG, path


def test_a_message_without_an_archived_file_has_none(page: Page, console: RunningApp):
    write = text_delivery(DEMO.waba_id, DEMO.phone_number_id, WA_ID, "solo texto", name="Ana")
    console.post_webhook(write, DEMO.secret)
    wait_for(lambda: console.settled(DEMO, WA_ID), what="the turn")
    [message] = [m for m in console.messages(DEMO, WA_ID) if m["direction"] == "in"]
    log_in(page, "op@demo.example")
    assert page.request.get(f"/console/c/demo/media/{message['id']}").status == 404
    assert page.request.get("/console/c/demo/media/999999").status == 404
    page.goto(f"/console/c/demo/conversations/{console.conversation(DEMO, WA_ID)['id']}")
    expect(page.get_by_test_id("message").first).to_contain_text("solo texto")
    expect(page.get_by_test_id("message-media")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/conversations/\d+$"))


def test_the_supabase_archive_reads_back_a_file_and_says_when_it_is_gone():
    objects = {"media/demo/1/photo.png": PNG}

    async def download(request: Request) -> Response:
        key = f"{request.path_params['bucket']}/{request.path_params['path']}"
        if key not in objects:  # what Storage answers for a missing object
            return JSONResponse({"statusCode": "404", "error": "not_found", "message": "Object not found"}, 400)
        assert request.headers["authorization"] == "Bearer service-key"
        return Response(objects[key], media_type="image/png")

    storage = Starlette(routes=[Route("/storage/v1/object/{bucket}/{path:path}", download, methods=["GET"])])

    async def read(url: str) -> list[Any]:
        archive = SupabaseMediaArchive(url, "service-key", "media")
        try:
            return [await archive.read("media/demo/1/photo.png"), await archive.read("media/demo/1/gone.png")]
        finally:
            await archive.aclose()

    # In a thread of its own: this module's Playwright keeps an event loop running in this one.
    with serve(storage) as url, ThreadPoolExecutor(1) as thread:
        found, gone = thread.submit(asyncio.run, read(url)).result()
    assert found == (PNG, "image/png") and gone is None
