"""Markdown to WhatsApp formatting, and splitting long replies at natural breaks."""

from __future__ import annotations

import pytest

from core.whatsapp.formatting import split_message, to_whatsapp


class TestToWhatsApp:
    @pytest.mark.parametrize(("markdown", "expected"), [
        ("**Precio:** $100", "*Precio:* $100"),
        ("__negrita__ y *cursiva*", "*negrita* y _cursiva_"),
        ("~~antes~~ ahora", "~antes~ ahora"),
        ("## Horarios\nLunes a viernes", "*Horarios*\nLunes a viernes"),
        ("* uno\n* dos\n+ tres", "- uno\n- dos\n- tres"),
        ("[Inscribite](https://example.com/curso)", "Inscribite (https://example.com/curso)"),
        ("[https://example.com](https://example.com)", "https://example.com"),
        ("precio 2*3*4 no es cursiva", "precio 2*3*4 no es cursiva"),
        ("uno\n\n\n\ndos", "uno\n\ndos"),
    ])
    def test_markdown_becomes_whatsapp(self, markdown: str, expected: str):
        assert to_whatsapp(markdown) == expected

    def test_code_blocks_are_kept_verbatim(self):
        assert to_whatsapp("Mirá:\n```python\nx = **y**\n```") == "Mirá:\n```x = **y**```"

    @pytest.mark.parametrize(("markdown", "expected"), [
        ("\x0012\x00", "12"), ("a \x003\x00 b", "a 3 b"), ("```\nx\n``` \x000\x00 **y**", "```x``` 0 *y*")])
    def test_a_model_writing_nul_digits_nul_gets_its_text_back(self, markdown: str, expected: str):
        # The placeholder of a set-aside code block is NUL<n>NUL: a model's own must not be taken for one.
        assert to_whatsapp(markdown) == expected


class TestSplitMessage:
    def test_short_text_is_one_part(self):
        assert split_message("hola") == ["hola"]

    def test_empty_text_is_no_part(self):
        assert split_message("  ") == []

    def test_splits_at_paragraphs_first(self):
        first, second = "a" * 3000, "b" * 3000
        assert split_message(f"{first}\n\n{second}") == [first, second]

    def test_splits_at_sentences_when_a_paragraph_is_too_long(self):
        sentences = [f"Oración número {n} con algo de texto." for n in range(200)]
        parts = split_message(" ".join(sentences), limit=500)
        assert all(len(part) <= 500 for part in parts)
        assert all(part.endswith(".") for part in parts)
        assert " ".join(parts) == " ".join(sentences)

    def test_a_word_longer_than_the_limit_is_cut_hard(self):
        parts = split_message("x" * 9000)
        assert [len(part) for part in parts] == [4096, 4096, 808]

    def test_every_part_fits_whatever_the_text(self):
        text = ("palabra " * 700 + "\n") * 3
        parts = split_message(text)
        assert all(0 < len(part) <= 4096 for part in parts)
        assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
