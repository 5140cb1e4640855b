"""Text to vectors with OpenAI's embeddings endpoint (or any OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from openai import AsyncOpenAI


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class OpenAIEmbedder:
    """`embeddings.create` in batches; the model (and optionally a shortened dimension) are settings."""

    def __init__(self, openai: AsyncOpenAI, model: str, *, dimensions: int | None = None,
                 batch_size: int = 128) -> None:
        self._openai = openai
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        options: dict[str, Any] = {"dimensions": self._dimensions} if self._dimensions else {}
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start:start + self._batch_size])
            response = await self._openai.embeddings.create(input=batch, model=self._model, **options)
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        if len(vectors) != len(texts):
            raise ValueError(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return vectors
