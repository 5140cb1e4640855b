"""The knowledge tool as the model calls it, and the offline responder's best answer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.knowledge.base import Document, Passage, SyncReport
from core.knowledge.lexical import LexicalRetriever
from core.knowledge.tool import NOTHING_FOUND, best_answer, search_knowledge
from core.llm.tools import Tool, ToolContext, ToolSet

pytestmark = pytest.mark.anyio


class KnowledgeOnly:
    """The knowledge part of the service's toolbox, over one retriever."""

    def __init__(self, retriever, top_k: int = 3) -> None:
        self._retriever = retriever
        self._top_k = top_k

    async def search_knowledge(self, client: str, query: str) -> list[Passage]:
        return await self._retriever.search(client, query, self._top_k)


def context(client: str, retriever, top_k: int = 3) -> ToolContext:
    return ToolContext(client=client, conversation_id=1, user_key="5491155550001", settings=None,
                       now=datetime(2026, 11, 22, 12, tzinfo=UTC), toolbox=KnowledgeOnly(retriever, top_k))


class BrokenRetriever:
    name = "broken"
    min_score = 0.5

    async def search(self, client: str, query: str, top_k: int) -> list[Passage]:
        raise ConnectionError("index unreachable")

    async def sync(self, client: str, documents: list[Document]) -> SyncReport:
        raise ConnectionError("index unreachable")

    async def aclose(self) -> None:
        pass


class TestKnowledgeSearchTool:
    def test_the_model_sees_one_string_argument_and_a_description(self, clients_root: Path):
        tool = Tool.from_function(search_knowledge)
        function = tool.openai_schema()["function"]
        assert function["name"] == "search_knowledge"
        assert function["parameters"]["properties"] == {"query": {"type": "string"}}
        assert function["parameters"]["required"] == ["query"]
        assert "knowledge base" in function["description"]
        assert ToolSet([search_knowledge])  # a client can list it

    async def test_it_returns_the_passages_of_the_turn_client(self, clients_root: Path):
        tool = Tool.from_function(search_knowledge)
        text = await tool.call('{"query": "¿Cuáles son los HORARIOS?"}', context("acme", LexicalRetriever(clients_root), 2))
        assert text.startswith("[1] Horarios y local > Horarios de atención (horarios.md)\nAtendemos de lunes")
        assert "[2]" in text and "[3]" not in text

    async def test_another_client_does_not_see_them(self, clients_root: Path):
        tool = Tool.from_function(search_knowledge)
        assert await tool.call('{"query": "horarios"}', context("beta", LexicalRetriever(clients_root))) == NOTHING_FOUND

    async def test_nothing_found_says_so(self, clients_root: Path):
        tool = Tool.from_function(search_knowledge)
        assert await tool.call('{"query": "bicicletas"}', context("acme", LexicalRetriever(clients_root))) == NOTHING_FOUND

    async def test_a_failing_backend_is_told_to_the_model_and_logged(self, caplog: pytest.LogCaptureFixture):
        tool = Tool.from_function(search_knowledge)
        with caplog.at_level(logging.ERROR, logger="core.knowledge"):
            text = await tool.call('{"query": "horarios"}', context("acme", BrokenRetriever()))
        assert text.startswith("Error: the knowledge base cannot be searched right now")
        [record] = [r for r in caplog.records if r.getMessage() == "knowledge.search_failed"]
        assert record.client == "acme"


class TestBestAnswer:
    async def test_a_good_match_is_the_answer(self, clients_root: Path):
        answer = await best_answer(LexicalRetriever(clients_root), "acme", "Hola! ¿cuáles son los horarios?")
        assert answer is not None and answer.startswith("Atendemos de lunes a viernes de 9 a 18 h")

    async def test_a_weak_match_is_no_answer(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        assert await best_answer(retriever, "acme", "¿tienen horarios para estacionar autos eléctricos?") is None
        assert await best_answer(retriever, "acme", "quiero hablar con una persona") is None

    async def test_the_threshold_can_be_given(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root, min_score=0.99)
        assert await best_answer(retriever, "acme", "¿Aceptan Mercado Pago?") is None
        assert await best_answer(retriever, "acme", "¿Aceptan Mercado Pago?", min_score=0.3) is not None

    async def test_a_failing_backend_is_no_answer(self, caplog: pytest.LogCaptureFixture):
        with caplog.at_level(logging.ERROR, logger="core.knowledge"):
            assert await best_answer(BrokenRetriever(), "acme", "horarios") is None
        assert any(r.getMessage() == "knowledge.search_failed" for r in caplog.records)
