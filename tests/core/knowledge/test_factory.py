"""build_retriever: Pinecone when it is fully configured, the local index otherwise."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.knowledge.base import Document
from core.knowledge.factory import build_retriever
from core.knowledge.lexical import LexicalRetriever
from core.knowledge.pinecone import PineconeRetriever
from core.knowledge.settings import KnowledgeSettings
from core.knowledge.tool import best_answer
from tests.core.knowledge.fakes import FakeEmbeddings, FakePinecone

pytestmark = pytest.mark.anyio


def settings(**values: object) -> KnowledgeSettings:
    return KnowledgeSettings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_nothing_configured_is_the_lexical_index(clients_root: Path):
    retriever = build_retriever(settings(), clients_root=clients_root)
    assert isinstance(retriever, LexicalRetriever)
    assert retriever.min_score == 0.5
    assert await best_answer(retriever, "acme", "¿Aceptan Mercado Pago?") is not None


async def test_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                       pinecone_server: FakePinecone,
                                                       embeddings_server: FakeEmbeddings, clients_root: Path):
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_server.api_key)
    monkeypatch.setenv("PINECONE_INDEX_HOST", pinecone_server.url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", embeddings_server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", embeddings_server.url)
    monkeypatch.setenv("KNOWLEDGE_MIN_SCORE", "0.3")
    retriever = build_retriever(KnowledgeSettings(_env_file=None), clients_root=clients_root)  # type: ignore[call-arg]
    try:
        assert isinstance(retriever, PineconeRetriever)
        assert retriever.min_score == 0.3
        await retriever.sync("acme", [Document("a.md", "# Pagos\nAceptamos Mercado Pago y tarjetas.\n")])
        assert await best_answer(retriever, "acme", "mercado pago") == "Aceptamos Mercado Pago y tarjetas."
    finally:
        await retriever.aclose()
    assert pinecone_server.errors == []
    assert pinecone_server.calls("query")[0]["namespace"] == "acme"


def test_pinecone_without_an_openai_key_falls_back_with_a_warning(clients_root: Path,
                                                                  caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="core.knowledge"):
        retriever = build_retriever(settings(pinecone_api_key="pc", pinecone_index_host="idx.svc.pinecone.io"),
                                    clients_root=clients_root)
    assert isinstance(retriever, LexicalRetriever)
    assert any(r.getMessage() == "knowledge.lexical_fallback" for r in caplog.records)


@pytest.mark.parametrize(("values", "missing"), [
    ({"pinecone_api_key": "pc"}, "PINECONE_INDEX_HOST"),
    ({"pinecone_index_host": "idx.svc.pinecone.io"}, "PINECONE_API_KEY"),
])
def test_half_a_pinecone_configuration_stops_startup_naming_the_variable(values: dict[str, str], missing: str):
    with pytest.raises(ConfigError, match=missing):
        load_settings(_env_file=None, openai_api_key="sk", **values)


def test_blank_variables_count_as_unset(clients_root: Path):
    retriever = build_retriever(settings(pinecone_api_key=" ", pinecone_index_host="", knowledge_min_score=""),
                                clients_root=clients_root)
    assert isinstance(retriever, LexicalRetriever)
