"""Knowledge search on Pinecone: one index, one namespace per client, vectors from OpenAI embeddings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pinecone import AsyncPinecone

from core.knowledge.base import Document, Passage, SyncReport
from core.knowledge.documents import split_all
from core.knowledge.embedding import Embedder

log = logging.getLogger("core.knowledge")

# Cosine similarity of text-embedding-3 vectors: related text is usually above 0.4, unrelated below 0.25.
DEFAULT_PINECONE_MIN_SCORE = 0.4
UPSERT_BATCH = 100  # vectors per upsert request, well under Pinecone's 2 MB request cap
DELETE_BATCH = 1000  # Pinecone's limit of ids per delete request


class PineconeRetriever:
    """Legacy vector API (`upsert`/`query`) on an index created with a dimension and the cosine metric.

    The index handle is opened on first use (the SDK opens it with a coroutine) and closed by `aclose`.
    Removing passages that left the files needs the index to list ids, which serverless indexes do.
    """

    name = "pinecone"

    def __init__(self, *, api_key: str, index_host: str, embedder: Embedder,
                 min_score: float = DEFAULT_PINECONE_MIN_SCORE, timeout: float = 10.0,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.min_score = min_score
        self._pinecone = AsyncPinecone(api_key=api_key, timeout=timeout)
        self._host = index_host
        self._embedder = embedder
        self._index: Any = None
        self._lock = asyncio.Lock()
        self._on_close = on_close  # e.g. the AsyncOpenAI client's close, when this retriever owns it

    async def search(self, client: str, query: str, top_k: int) -> list[Passage]:
        if not query.strip():
            return []
        [vector] = await self._embedder.embed([query])
        index = await self._open()
        response = await index.query(top_k=top_k, vector=vector, namespace=client, include_metadata=True)
        passages = []
        for match in response.matches:
            metadata = match.metadata or {}
            passages.append(Passage(id=match.id, text=str(metadata.get("text", "")),
                                    source=str(metadata.get("source", "")), title=str(metadata.get("title", "")),
                                    score=float(match.score)))
        return passages

    async def sync(self, client: str, documents: list[Document]) -> SyncReport:
        passages = split_all(documents)
        vectors = await self._embedder.embed([_embedding_text(p) for p in passages]) if passages else []
        index = await self._open()
        for start in range(0, len(passages), UPSERT_BATCH):
            batch = [
                {"id": p.id, "values": values, "metadata": {"text": p.text, "source": p.source, "title": p.title}}
                for p, values in zip(passages[start:start + UPSERT_BATCH], vectors[start:start + UPSERT_BATCH],
                                     strict=True)
            ]
            await index.upsert(vectors=batch, namespace=client)
        current = {p.id for p in passages}
        stale: list[str] = []
        async for page in index.list(namespace=client):
            stale.extend(item.id for item in page.vectors if item.id and item.id not in current)
        for start in range(0, len(stale), DELETE_BATCH):
            await index.delete(ids=stale[start:start + DELETE_BATCH], namespace=client)
        log.info("knowledge.synced", extra={"client": client, "backend": self.name, "passages": len(passages),
                                            "removed": len(stale)})
        return SyncReport(client, self.name, tuple(d.source for d in documents), len(passages), len(stale))

    async def aclose(self) -> None:
        if self._index is not None:
            await self._index.close()
            self._index = None
        await self._pinecone.close()
        if self._on_close is not None:
            await self._on_close()

    async def _open(self) -> Any:
        async with self._lock:
            if self._index is None:
                self._index = await self._pinecone.index(host=self._host)
            return self._index


def _embedding_text(passage: Passage) -> str:
    return f"{passage.title}\n\n{passage.text}" if passage.title else passage.text
