"""Spanish text analysis: case and accents folded, ñ kept, stop words dropped, plurals folded."""

from __future__ import annotations

import pytest

from core.knowledge.text import analyze, fold, slug, stem


class TestFold:
    def test_case_and_accents_are_folded(self):
        assert fold("INSCRIPCIÓN Envío Pingüino ÁÉÍÓÚ") == "inscripcion envio pinguino aeiou"

    def test_enye_stays_a_letter_of_its_own(self):
        assert fold("AÑO Ñandú") == "año ñandu"
        assert fold("año") != fold("ano")

    def test_decomposed_input_is_folded_like_composed(self):
        decomposed = "an\u0303o envi\u0301o"
        assert fold(decomposed) == "año envio"


class TestStem:
    @pytest.mark.parametrize(("words", "expected"), [
        (["horario", "horarios", "HORARIOS"], "horari"),
        (["envío", "envio", "envíos", "ENVIOS"], "envi"),
        (["inscripción", "inscripcion", "inscripciones"], "inscripcion"),
        (["tarjeta", "tarjetas"], "tarjet"),
        (["luz", "luces"], "luz"),
        (["mes", "meses"], "mes"),
        (["clase", "clases"], "clas"),
        (["abierto", "abierta", "abiertos"], "abiert"),
    ])
    def test_forms_of_a_word_meet(self, words: list[str], expected: str):
        assert {stem(fold(word)) for word in words} == {expected}

    def test_short_words_and_numbers_are_kept(self):
        assert stem("sol") == "sol"
        assert stem("2026") == "2026"


class TestAnalyze:
    def test_stop_words_and_chat_filler_are_dropped(self):
        assert analyze("Hola, ¿cuáles son los horarios de la tienda? Gracias") == ["horari", "tiend"]

    def test_punctuation_splits_words(self):
        assert analyze("envíos/pagos: 9-18hs") == ["envi", "pag", "9", "18hs"]


def test_slug_is_ascii():
    assert slug("Años & Señas — Envíos") == "anos-senas-envios"
    assert slug("¿?") == "x"
