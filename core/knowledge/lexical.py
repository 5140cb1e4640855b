"""The embedded default retriever: BM25 over a client's passages, in memory, no network."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from core.knowledge.base import Document, Passage, SyncReport
from core.knowledge.documents import knowledge_dir, load_documents, split_all
from core.knowledge.text import analyze

log = logging.getLogger("core.knowledge")

# The share of a question's weight a passage must hold for the offline responder to send it.
DEFAULT_LEXICAL_MIN_SCORE = 0.5


class Bm25Index:
    """Okapi BM25 over passages; the title (headings) counts as part of each passage's text."""

    def __init__(self, passages: Sequence[Passage], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.passages = list(passages)
        self._k1 = k1
        self._b = b
        self._terms = [Counter(analyze(f"{passage.title}\n{passage.text}")) for passage in self.passages]
        self._lengths = [sum(terms.values()) for terms in self._terms]
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0
        self._df: Counter[str] = Counter(term for terms in self._terms for term in terms)

    def __len__(self) -> int:
        return len(self.passages)

    def idf(self, term: str) -> float:
        count = len(self.passages)
        df = self._df.get(term, 0)
        return math.log(1 + (count - df + 0.5) / (df + 0.5))

    def search(self, query: str, top_k: int) -> list[Passage]:
        """Passages sharing a term with `query`, best first.

        `score` is BM25 divided by the score of an average-length passage holding every query term once,
        capped at 1: about the share of the question's weight the passage answers. Words the knowledge
        never uses count against it, so "¿hacen envíos a Marte?" scores lower than "¿hacen envíos?".
        """
        terms = set(analyze(query))
        if not terms or not self.passages:
            return []
        ideal = sum(self.idf(term) for term in terms)
        scored: list[tuple[float, int]] = []
        for position, (counts, length) in enumerate(zip(self._terms, self._lengths, strict=True)):
            raw = 0.0
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    norm = self._k1 * (1 - self._b + self._b * length / self._average)
                    raw += self.idf(term) * tf * (self._k1 + 1) / (tf + norm)
            if raw > 0:
                scored.append((raw, position))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [replace(self.passages[position], score=min(1.0, raw / ideal)) for raw, position in scored[:top_k]]


class LexicalRetriever:
    """BM25 per client, built from `clients/<name>/knowledge/*.md` on sync or lazily on first search.

    The index lives in this process's memory: each process builds its own from the files deployed with
    it, so `python -m core knowledge sync` in another process only checks and reports for this backend.
    """

    name = "lexical"

    def __init__(self, clients_root: Path, *, min_score: float = DEFAULT_LEXICAL_MIN_SCORE) -> None:
        self.min_score = min_score
        self._clients_root = clients_root
        self._indexes: dict[str, Bm25Index] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def search(self, client: str, query: str, top_k: int) -> list[Passage]:
        index = self._indexes.get(client)
        if index is None:
            index = await self._load(client)
        return index.search(query, top_k)

    async def sync(self, client: str, documents: list[Document]) -> SyncReport:
        index = Bm25Index(split_all(documents))
        previous = self._indexes.get(client)
        removed = len({p.id for p in previous.passages} - {p.id for p in index.passages}) if previous else 0
        self._indexes[client] = index
        log.info("knowledge.synced", extra={"client": client, "backend": self.name, "passages": len(index)})
        return SyncReport(client, self.name, tuple(d.source for d in documents), len(index), removed)

    async def aclose(self) -> None:
        self._indexes.clear()

    async def _load(self, client: str) -> Bm25Index:
        lock = self._locks.setdefault(client, asyncio.Lock())
        async with lock:  # concurrent first searches read the files once
            if client not in self._indexes:
                folder = knowledge_dir(self._clients_root, client)
                documents = await asyncio.to_thread(load_documents, folder)
                self._indexes[client] = Bm25Index(split_all(documents))
                log.info("knowledge.index_built", extra={"client": client, "backend": self.name,
                                                         "passages": len(self._indexes[client])})
            return self._indexes[client]
