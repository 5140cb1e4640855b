"""What knowledge search deals in: documents, passages, sync reports, and the `Retriever` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Document:
    """One knowledge file of a client: its name in the knowledge folder and its Markdown text."""

    source: str
    text: str


@dataclass(frozen=True)
class Passage:
    """A searchable piece of a document; `score` is the match quality of a search (higher is better)."""

    id: str
    text: str
    source: str
    score: float = 0.0
    title: str = ""  # the headings it sits under, "Envíos > Zonas"


@dataclass(frozen=True)
class SyncReport:
    """What a sync did to a client's index."""

    client: str
    backend: str
    sources: tuple[str, ...]
    passages: int
    removed: int = 0

    def describe(self) -> str:
        files = ", ".join(self.sources) or "no files"
        removed = f"; {self.removed} stale passage(s) removed" if self.removed else ""
        return (f"{self.client}: {self.passages} passage(s) from {len(self.sources)} file(s) ({files}) "
                f"indexed with the {self.backend} backend{removed}")


class Retriever(Protocol):
    """Knowledge search with one namespace per client."""

    name: str  # "lexical" or "pinecone"
    min_score: float  # the score a best match needs to be given as an answer without an LLM

    async def search(self, client: str, query: str, top_k: int) -> list[Passage]:
        """The passages of `client` that best match `query`, best first, at most `top_k`."""
        ...

    async def sync(self, client: str, documents: list[Document]) -> SyncReport:
        """Replace the client's index with the passages of `documents`."""
        ...

    async def aclose(self) -> None:
        """Release connections; the retriever is not used afterwards."""
        ...
