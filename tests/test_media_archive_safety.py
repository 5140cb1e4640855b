"""The media archive keeps each message's own file, and never serves a received file as a page that runs script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.storage.media import archive_path
from tests.conftest import EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import text_delivery, wait_for
from tests.test_media_archive import FakeSupabaseStorage, start, storage  # noqa: F401 (storage is a fixture)

SARA = "5491155550090"


def media_delivery(messages: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """One delivery from Sara with a media message per (wamid, type, media object)."""
    delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, SARA, "")
    template = delivery["entry"][0]["changes"][0]["value"]["messages"].pop()
    del template["text"]
    delivery["entry"][0]["changes"][0]["value"]["messages"] = [
        {**template, "id": wamid, "type": kind, kind: media} for wamid, kind, media in messages]
    return delivery


def archived(app: Any) -> dict[str, str | None]:
    """media_path of each of Sara's inbound messages, by wamid."""
    return {m["wamid"]: m["media_path"] for m in app.messages(EMPRENDEMY, SARA) if m["direction"] == "in"}


class TestArchiveNames:
    def test_two_wamids_that_differ_only_in_unsafe_characters_keep_their_own_files(
            self, start_app: Any, graph: FakeGraph, llm: FakeOpenAI, tmp_path: Path):
        # Meta's wamids are base64: '+' and '/' both became '_' in the file name, so the second file replaced
        # the first and both messages pointed at it.
        plus, slash = "wamid.HBgLNTQ5MTE1NTU1MDA5MBUCABIYFjNFQjA+QUI=", "wamid.HBgLNTQ5MTE1NTU1MDA5MBUCABIYFjNFQjA/QUI="
        graph.media["photo-1"] = (b"\x89PNG-first", "image/png")
        graph.media["photo-2"] = (b"\x89PNG-second", "image/png")
        app = start(start_app, graph, llm, media_archive_dir=tmp_path / "archive")

        app.post_webhook(media_delivery([(plus, "image", {"id": "photo-1", "mime_type": "image/png"}),
                                         (slash, "image", {"id": "photo-2", "mime_type": "image/png"})]),
                         EMPRENDEMY.secret)
        wait_for(lambda: app.settled(EMPRENDEMY, SARA), what="the turn to end")

        paths = archived(app)
        assert paths[plus] != paths[slash]
        assert (tmp_path / "archive" / paths[plus]).read_bytes() == b"\x89PNG-first"
        assert (tmp_path / "archive" / paths[slash]).read_bytes() == b"\x89PNG-second"

    def test_wamids_alike_in_their_first_200_characters_get_different_names(self):
        first, second = "wamid." + "A" * 300 + "1", "wamid." + "A" * 300 + "2"

        assert archive_path("demo", 1, first, "image/png") != archive_path("demo", 1, second, "image/png")

    def test_a_name_is_the_same_every_time_and_safe_as_a_path(self):
        wamid = "wamid.HBgL/../..+x="

        name = archive_path("demo", 7, wamid, "image/jpeg")

        assert name == archive_path("demo", 7, wamid, "image/jpeg")
        assert name.startswith("demo/7/wamid.HBgL_.._.._x_") and name.endswith(".jpg")
        assert name.count("/") == 2


class TestActiveContent:
    @pytest.mark.parametrize(("kind", "mime_type"), [
        ("document", "text/html"),
        ("document", "application/xhtml+xml"),
        ("image", "image/svg+xml"),
        ("document", "text/xml; charset=utf-8"),
        ("document", "application/javascript"),
    ])
    def test_is_uploaded_as_plain_bytes(self, start_app: Any, graph: FakeGraph, llm: FakeOpenAI,
                                        storage: FakeSupabaseStorage, kind: str, mime_type: str):  # noqa: F811
        page = b"<html><script>fetch('/steal')</script></html>"
        graph.media["page"] = (page, mime_type)
        app = start(start_app, graph, llm, supabase_url=storage.url, supabase_service_key="service-key",
                    supabase_media_bucket="media")

        app.post_webhook(media_delivery([("wamid.PAGE1", kind, {"id": "page", "mime_type": mime_type})]),
                         EMPRENDEMY.secret)
        wait_for(lambda: app.settled(EMPRENDEMY, SARA), what="the turn to end")

        [upload] = storage.uploads
        assert upload["content_type"] == "application/octet-stream"
        assert upload["path"].endswith(".bin")
        assert upload["content"] == page
        assert archived(app)["wamid.PAGE1"] == f"media/{upload['path']}"

    def test_an_active_file_in_the_local_folder_gets_no_extension_a_server_would_map_to_it(
            self, start_app: Any, graph: FakeGraph, llm: FakeOpenAI, tmp_path: Path):
        graph.media["drawing"] = (b"<svg onload='alert(1)'/>", "image/svg+xml")
        app = start(start_app, graph, llm, media_archive_dir=tmp_path / "archive")

        app.post_webhook(media_delivery([("wamid.SVG1", "image", {"id": "drawing", "mime_type": "image/svg+xml"})]),
                         EMPRENDEMY.secret)
        wait_for(lambda: app.settled(EMPRENDEMY, SARA), what="the turn to end")

        assert archived(app)["wamid.SVG1"].endswith(".bin")

    @pytest.mark.parametrize(("kind", "mime_type", "extension"), [
        ("image", "image/jpeg", ".jpg"),
        ("document", "application/pdf", ".pdf"),
        ("audio", "audio/ogg; codecs=opus", ".oga"),
        ("video", "video/mp4", ".mp4"),
        ("sticker", "image/webp", ".webp"),
    ])
    def test_media_keep_their_own_type(self, start_app: Any, graph: FakeGraph, llm: FakeOpenAI,
                                       storage: FakeSupabaseStorage, kind: str, mime_type: str,  # noqa: F811
                                       extension: str):
        graph.media["file"] = (b"bytes", mime_type)
        app = start(start_app, graph, llm, supabase_url=storage.url, supabase_service_key="service-key",
                    supabase_media_bucket="media")

        app.post_webhook(media_delivery([("wamid.FILE1", kind, {"id": "file", "mime_type": mime_type})]),
                         EMPRENDEMY.secret)
        wait_for(lambda: app.settled(EMPRENDEMY, SARA), what="the turn to end")

        [upload] = storage.uploads
        assert upload["content_type"] == mime_type.split(";")[0]
        assert upload["path"].endswith(extension)
