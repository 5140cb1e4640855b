"""Knowledge files split into passages by headings and paragraphs, with ids that stay put."""

from __future__ import annotations

from pathlib import Path

from core.knowledge.base import Document
from core.knowledge.documents import load_documents, split_passages


class TestSplitPassages:
    def test_one_passage_per_section_titled_by_its_headings(self):
        text = "# Envíos\n\nIntro de envíos.\n\n## Zonas\nTodo el país.\n\nTambién CABA.\n\n## Tiempos\n3 a 6 días.\n"
        passages = split_passages(Document("envios.md", text))
        assert [(p.title, p.text) for p in passages] == [
            ("Envíos", "Intro de envíos."),
            ("Envíos > Zonas", "Todo el país.\n\nTambién CABA."),
            ("Envíos > Tiempos", "3 a 6 días."),
        ]
        assert [p.id for p in passages] == ["envios:envios:1", "envios:envios-zonas:1", "envios:envios-tiempos:1"]
        assert {p.source for p in passages} == {"envios.md"}

    def test_text_before_any_heading_is_an_intro(self):
        [passage] = split_passages(Document("faq.md", "Somos una tienda de barrio.\n"))
        assert (passage.id, passage.title) == ("faq:intro:1", "")

    def test_ids_survive_edits_inside_a_section(self):
        before = split_passages(Document("a.md", "# Pagos\nEfectivo.\n# Envíos\nSí.\n"))
        edited = "# Pagos\nEfectivo y tarjeta, en 3 cuotas.\n# Envíos\nA todo el país.\n"
        after = split_passages(Document("a.md", edited))
        assert [p.id for p in before] == [p.id for p in after]

    def test_long_sections_split_at_paragraphs_and_repeated_headings_get_distinct_ids(self):
        paragraphs = "\n\n".join(f"Párrafo {n} " + "palabra " * 40 for n in range(6))
        text = f"# Preguntas\n{paragraphs}\n# Preguntas\nOtra vez.\n"
        passages = split_passages(Document("faq.md", text), max_chars=700)
        assert len(passages) > 2
        assert all(len(p.text) <= 700 for p in passages[:-1])
        assert len({p.id for p in passages}) == len(passages)
        assert all(p.id.isascii() for p in passages)
        assert "".join(p.text for p in passages[:-1]).count("Párrafo") == 6

    def test_a_hash_inside_a_code_block_is_not_a_heading(self):
        text = "# Comandos\n```\n# no es un título\n\nsigue el bloque\n```\n"
        [passage] = split_passages(Document("c.md", text))
        assert passage.title == "Comandos"
        assert "# no es un título" in passage.text and "sigue el bloque" in passage.text


def test_load_documents_reads_the_markdown_files_by_name(tmp_path: Path):
    (tmp_path / "b.md").write_text("# B\nbe", encoding="utf-8")
    (tmp_path / "a.md").write_text("# A\na", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [d.source for d in load_documents(tmp_path)] == ["a.md", "b.md"]
    assert load_documents(tmp_path / "missing") == []
