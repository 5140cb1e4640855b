"""BM25 over a client's Spanish knowledge files: accents, case and plurals don't get in the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.knowledge.base import Document
from core.knowledge.documents import knowledge_dir
from core.knowledge.lexical import LexicalRetriever

pytestmark = pytest.mark.anyio

HOURS = "horarios:horarios-y-local-horarios-de-atencion:1"
SIGN_UP = "talleres:talleres-de-cocina-inscripcion:1"
SHIPPING_TIME = "envios:envios-tiempos-de-entrega:1"
PAYMENT = "pagos:medios-de-pago:1"


async def best_id(retriever: LexicalRetriever, query: str, client: str = "acme") -> str | None:
    passages = await retriever.search(client, query, 3)
    return passages[0].id if passages else None


class TestSearch:
    @pytest.mark.parametrize(("query", "expected"), [
        ("HORARIOS", HOURS),
        ("horario de atencion", HOURS),
        ("¿Cuáles son los horarios de atención?", HOURS),
        ("inscripcion", SIGN_UP),
        ("INSCRIPCIÓN", SIGN_UP),
        ("inscripciones", SIGN_UP),
        ("¿Cuánto tardan los envios?", SHIPPING_TIME),
        ("ENVÍO al interior", SHIPPING_TIME),
        ("¿aceptan tarjeta?", PAYMENT),
        ("mercado pago", PAYMENT),
    ])
    async def test_case_accent_and_plural_variants_find_the_passage(self, clients_root: Path, query: str,
                                                                    expected: str):
        assert await best_id(LexicalRetriever(clients_root), query) == expected

    async def test_a_query_sharing_no_word_finds_nothing(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        assert await retriever.search("acme", "¿Venden bicicletas?", 3) == []
        assert await retriever.search("acme", "hola, buenas", 3) == []  # only filler words

    async def test_results_are_ranked_scored_and_bounded(self, clients_root: Path):
        passages = await LexicalRetriever(clients_root).search("acme", "envío", 1)
        assert len(passages) == 1
        assert 0 < passages[0].score <= 1
        assert passages[0].source == "envios.md"
        assert passages[0].title.startswith("Envíos")

    async def test_a_partial_match_scores_lower_than_a_full_one(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        [full] = await retriever.search("acme", "horarios de atención", 1)
        [partial] = await retriever.search("acme", "horarios del estacionamiento de autos eléctricos", 1)
        assert partial.id == full.id == HOURS
        assert partial.score < retriever.min_score <= full.score

    async def test_a_client_without_knowledge_finds_nothing(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        assert await retriever.search("other", "horarios", 3) == []
        (clients_root / "other" / "knowledge").mkdir(parents=True)
        (clients_root / "other" / "knowledge" / "a.md").write_text("# Horarios\nDe 9 a 18.\n")
        assert await retriever.search("other", "horarios", 3) == []  # the empty index is kept until a sync


class TestIndexLifecycle:
    async def test_the_index_is_built_from_the_files_on_first_search_and_kept(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        assert await best_id(retriever, "garantía") == "talleres:talleres-de-cocina-garantia:1"
        (knowledge_dir(clients_root, "acme") / "talleres.md").unlink()
        # Kept in memory until the next sync: a running server does not re-read files per message.
        assert await best_id(retriever, "garantía") == "talleres:talleres-de-cocina-garantia:1"

    async def test_sync_replaces_the_client_index_and_reports_it(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        await retriever.search("acme", "horarios", 1)
        report = await retriever.sync("acme", [Document("nuevo.md", "# Promos\nMartes 2x1 en empanadas.\n")])
        assert (report.client, report.backend, report.sources, report.passages) == ("acme", "lexical", ("nuevo.md",), 1)
        assert report.removed == 7
        assert await best_id(retriever, "horarios") is None
        assert await best_id(retriever, "EMPANADAS") == "nuevo:promos:1"

    async def test_clients_have_separate_indexes(self, clients_root: Path):
        retriever = LexicalRetriever(clients_root)
        await retriever.sync("beta", [Document("b.md", "# Horarios\nAbrimos las 24 horas.\n")])
        [beta] = await retriever.search("beta", "horarios", 3)
        assert beta.source == "b.md"
        assert {p.source for p in await retriever.search("acme", "horarios", 3)} == {"horarios.md"}
