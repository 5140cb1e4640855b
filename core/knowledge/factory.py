"""Pick the retriever the settings call for: Pinecone when it is configured, else the lexical index."""

from __future__ import annotations

import logging
from pathlib import Path

from openai import AsyncOpenAI

from core.errors import ConfigError
from core.knowledge.base import Retriever
from core.knowledge.documents import clients_dir
from core.knowledge.lexical import DEFAULT_LEXICAL_MIN_SCORE, LexicalRetriever
from core.knowledge.settings import KnowledgeSettings

log = logging.getLogger("core.knowledge")


def build_retriever(settings: KnowledgeSettings, *, clients_root: Path | None = None,
                    openai: AsyncOpenAI | None = None) -> Retriever:
    """Pinecone with OpenAI embeddings when PINECONE_API_KEY, PINECONE_INDEX_HOST and an OpenAI key are set.

    `openai` lets the caller share its client (it stays the caller's to close); otherwise one is made
    from OPENAI_API_KEY / OPENAI_BASE_URL and closed with the retriever.
    """
    if (settings.pinecone_api_key is None) != (settings.pinecone_index_host is None):
        missing = "PINECONE_INDEX_HOST" if settings.pinecone_index_host is None else "PINECONE_API_KEY"
        raise ConfigError(f"{missing} must be set too: Pinecone needs both PINECONE_API_KEY and PINECONE_INDEX_HOST")
    key, host = settings.pinecone_api_key, settings.pinecone_index_host
    if key is not None and host is not None and (openai is not None or settings.openai_api_key is not None):
        from core.knowledge.embedding import OpenAIEmbedder
        from core.knowledge.pinecone import DEFAULT_PINECONE_MIN_SCORE, PineconeRetriever

        on_close = None
        if openai is None and settings.openai_api_key is not None:
            openai = AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url,
                                 timeout=settings.knowledge_timeout_seconds)
            on_close = openai.close
        assert openai is not None
        return PineconeRetriever(
            api_key=key.get_secret_value(),
            index_host=host,
            embedder=OpenAIEmbedder(openai, settings.embedding_model, dimensions=settings.embedding_dimensions),
            min_score=_or(settings.knowledge_min_score, DEFAULT_PINECONE_MIN_SCORE),
            timeout=settings.knowledge_timeout_seconds,
            on_close=on_close,
        )
    if settings.uses_pinecone:
        log.warning("knowledge.lexical_fallback",
                    extra={"detail": "PINECONE_API_KEY is set but OPENAI_API_KEY is not (embeddings need it): "
                                     "using the local lexical index"})
    root = clients_root if clients_root is not None else clients_dir(settings.clients_package)
    return LexicalRetriever(root, min_score=_or(settings.knowledge_min_score, DEFAULT_LEXICAL_MIN_SCORE))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
