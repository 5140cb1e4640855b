"""GraphSender.download_media against the stand-in Graph API: the size cap holds on what the file decodes to."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import httpx
import pytest

from core.whatsapp.client import GraphSender
from core.whatsapp.errors import WhatsAppError
from tests.fakes.graph import FakeGraph

MB = 1024 * 1024
PHOTO = b"\x89PNG-fake-photo-bytes" * 1000


def gzip_of_zeros(size: int) -> bytes:
    """A gzip member that decodes to `size` zero bytes, made without holding them (~1 KB per MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MB)
    return b"".join(compressor.compress(block) for _ in range(size // MB)) + compressor.flush()


async def download(graph: FakeGraph, media_id: str, max_bytes: int, timeout: float = 10.0) -> bytes:
    async with httpx.AsyncClient(timeout=timeout) as http:
        sender = GraphSender(http, graph.url)  # type: ignore[attr-defined]
        media = await sender.download_media(media_id, "token", max_bytes)
    return media.content


@pytest.mark.anyio
class TestDownloadMedia:
    async def test_a_gzip_bomb_is_refused_before_it_is_decompressed(self, graph: FakeGraph):
        bomb = gzip_of_zeros(200 * MB)
        assert len(bomb) < MB  # the lookup's file_size and every length Meta could declare are small
        graph.media["bomb"] = (bomb, "image/png")
        graph.media_encoding["bomb"] = "gzip"

        tracemalloc.start()
        try:
            with pytest.raises(WhatsAppError, match="over the 1048576-byte cap"):
                await download(graph, "bomb", MB)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        # The cap plus a chunk or two, not the tens of megabytes one network chunk of zeros decodes to.
        assert peak < 8 * MB, f"peak {peak / MB:.0f} MB"

    async def test_a_gzip_encoded_file_under_the_cap_arrives_decoded(self, graph: FakeGraph):
        graph.media["photo"] = (gzip.compress(PHOTO), "image/png")
        graph.media_encoding["photo"] = "gzip"

        assert await download(graph, "photo", MB) == PHOTO

    async def test_a_file_that_decodes_to_exactly_the_cap_is_kept(self, graph: FakeGraph):
        graph.media["exact"] = (gzip_of_zeros(2 * MB), "application/pdf")
        graph.media_encoding["exact"] = "gzip"

        assert await download(graph, "exact", 2 * MB) == bytes(2 * MB)
        with pytest.raises(WhatsAppError, match="cap"):
            await download(graph, "exact", 2 * MB - 1)

    async def test_a_declared_length_over_the_cap_is_refused_without_reading_the_body(self, graph: FakeGraph):
        # The lookup reports 1 KB; the download then declares 50 MB, sends 1 KB and stalls.
        graph.media["liar"] = (PHOTO[:1024], "image/png")
        graph.media_declared_length["liar"] = 50 * MB

        started = time.monotonic()
        with pytest.raises(WhatsAppError, match="declares 52428800 bytes, over the 1048576-byte cap"):
            await download(graph, "liar", MB, timeout=3.0)
        assert time.monotonic() - started < 3.0

    async def test_an_encoding_it_cannot_decode_within_the_cap_is_refused(self, graph: FakeGraph):
        graph.media["br"] = (b"\x1b\x00\x00", "image/png")
        graph.media_encoding["br"] = "br"

        with pytest.raises(WhatsAppError, match="Content-Encoding 'br'"):
            await download(graph, "br", MB)
