"""The Pinecone retriever against stand-in Pinecone and OpenAI servers on 127.0.0.1 (real SDKs, real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from core.knowledge.base import Document
from core.knowledge.documents import knowledge_dir, load_documents, split_all
from core.knowledge.embedding import OpenAIEmbedder
from core.knowledge.pinecone import PineconeRetriever
from tests.core.knowledge.fakes import DIMENSION, FakeEmbeddings, FakePinecone

pytestmark = pytest.mark.anyio


@pytest.fixture
async def retriever(pinecone_server: FakePinecone,
                    embeddings_server: FakeEmbeddings) -> AsyncIterator[PineconeRetriever]:
    openai = AsyncOpenAI(api_key=embeddings_server.api_key, base_url=embeddings_server.url, max_retries=0)
    opened = PineconeRetriever(api_key=pinecone_server.api_key, index_host=pinecone_server.url,
                               embedder=OpenAIEmbedder(openai, "text-embedding-3-small", batch_size=3),
                               on_close=openai.close)
    yield opened
    await opened.aclose()


@pytest.fixture
def documents(clients_root: Path) -> list[Document]:
    return load_documents(knowledge_dir(clients_root, "acme"))


class TestSync:
    async def test_passages_are_upserted_into_the_client_namespace(self, retriever: PineconeRetriever,
                                                                   documents: list[Document],
                                                                   pinecone_server: FakePinecone):
        report = await retriever.sync("acme", documents)
        passages = split_all(documents)
        assert (report.backend, report.passages, report.removed) == ("pinecone", len(passages), 0)
        assert report.sources == ("envios.md", "horarios.md", "pagos.md", "talleres.md")
        assert pinecone_server.errors == []
        assert {body["namespace"] for body in pinecone_server.calls("upsert")} == {"acme"}
        stored = pinecone_server.namespaces["acme"]
        assert set(stored) == {p.id for p in passages}
        for passage in passages:
            values, metadata = stored[passage.id]
            assert len(values) == DIMENSION
            assert metadata == {"text": passage.text, "source": passage.source, "title": passage.title}

    async def test_embeddings_are_asked_of_the_configured_model_in_batches(self, retriever: PineconeRetriever,
                                                                          documents: list[Document],
                                                                          embeddings_server: FakeEmbeddings):
        await retriever.sync("acme", documents)
        assert {r["model"] for r in embeddings_server.requests} == {"text-embedding-3-small"}
        assert [len(r["input"]) for r in embeddings_server.requests] == [3, 3, 1]
        assert embeddings_server.requests[0]["input"][0].startswith("Envíos > Zonas y costos\n\nHacemos envíos")

    async def test_a_resync_removes_passages_that_left_the_files(self, retriever: PineconeRetriever,
                                                                documents: list[Document],
                                                                pinecone_server: FakePinecone):
        await retriever.sync("acme", documents)
        await retriever.sync("other", documents[:1])
        report = await retriever.sync("acme", [d for d in documents if d.source != "horarios.md"])
        assert report.removed == 2
        assert not any(key.startswith("horarios:") for key in pinecone_server.namespaces["acme"])
        assert len(pinecone_server.namespaces["acme"]) == 5
        assert len(pinecone_server.namespaces["other"]) == 2  # another client's namespace is untouched
        assert len(pinecone_server.calls("list")) > 1  # ids were listed page by page
        [delete] = pinecone_server.calls("delete")
        assert delete["namespace"] == "acme"
        assert pinecone_server.errors == []


class TestSearch:
    async def test_the_query_goes_to_the_client_namespace_with_top_k(self, retriever: PineconeRetriever,
                                                                     documents: list[Document],
                                                                     pinecone_server: FakePinecone):
        await retriever.sync("acme", documents)
        passages = await retriever.search("acme", "¿Cuáles son los horarios de atención?", 2)
        [query] = pinecone_server.calls("query")
        assert (query["namespace"], query["topK"], query["includeMetadata"]) == ("acme", 2, True)
        assert len(query["vector"]) == DIMENSION
        assert len(passages) == 2
        assert passages[0].id == "horarios:horarios-y-local-horarios-de-atencion:1"
        assert passages[0].text.startswith("Atendemos de lunes a viernes")
        assert (passages[0].source, passages[0].title) == ("horarios.md", "Horarios y local > Horarios de atención")
        assert passages[0].score > passages[1].score

    async def test_clients_do_not_see_each_other(self, retriever: PineconeRetriever, documents: list[Document]):
        await retriever.sync("acme", documents)
        await retriever.sync("beta", [Document("b.md", "# Horarios\nAbrimos las 24 horas, todos los días.\n")])
        assert {p.source for p in await retriever.search("beta", "horarios", 5)} == {"b.md"}

    async def test_an_empty_query_asks_nothing(self, retriever: PineconeRetriever, pinecone_server: FakePinecone):
        assert await retriever.search("acme", "   ", 3) == []
        assert pinecone_server.requests == []

    async def test_a_refused_key_raises(self, pinecone_server: FakePinecone, embeddings_server: FakeEmbeddings):
        from pinecone.errors import PineconeError

        openai = AsyncOpenAI(api_key=embeddings_server.api_key, base_url=embeddings_server.url, max_retries=0)
        wrong = PineconeRetriever(api_key="pc-wrong", index_host=pinecone_server.url,
                                  embedder=OpenAIEmbedder(openai, "text-embedding-3-small"), on_close=openai.close)
        try:
            with pytest.raises(PineconeError):
                await wrong.search("acme", "horarios", 3)
        finally:
            await wrong.aclose()


async def test_shortened_dimensions_are_requested(pinecone_server: FakePinecone, embeddings_server: FakeEmbeddings):
    pinecone_server.dimension = 32
    openai = AsyncOpenAI(api_key=embeddings_server.api_key, base_url=embeddings_server.url, max_retries=0)
    retriever = PineconeRetriever(api_key=pinecone_server.api_key, index_host=pinecone_server.url,
                                  embedder=OpenAIEmbedder(openai, "text-embedding-3-large", dimensions=32),
                                  on_close=openai.close)
    try:
        await retriever.sync("acme", [Document("a.md", "# Pagos\nEfectivo y tarjeta.\n")])
        assert [p.id for p in await retriever.search("acme", "tarjeta", 1)] == ["a:pagos:1"]
    finally:
        await retriever.aclose()
    assert {(r["model"], r["dimensions"]) for r in embeddings_server.requests} == {("text-embedding-3-large", 32)}
    assert pinecone_server.errors == []
