"""Spanish-aware text analysis for lexical search: fold case and accents, drop stop words, fold plurals."""

from __future__ import annotations

import re
import unicodedata

_COMBINING_TILDE = "\u0303"
_WORD = re.compile(r"[^\W_]+")

# Function words and chat filler, already folded. Question words are here too: BM25 would
# weigh them little anyway, and leaving them out keeps "¿cuánto sale?" from diluting a score.
STOP_WORDS = frozenset("""
a al algo algun alguna algunas alguno algunos ante antes aqui asi cada como con contra cual cuales cualquier
cuando cuanta cuantas cuanto cuantos de del desde donde durante e el ella ellas ellos en entre era es esa esas
ese eso esos esta estamos estan estas este esto estos estoy fue ha hace hacemos hacen han hasta hay la las le
les lo los mas me mi mis mucho muy nada ni no nos nosotros o otra otras otro otros para pero poco por porque
pues que quien quienes se sea ser si sin sobre son su sus tal tambien te tenemos tener tenes tengo ti tiene
tienen tu tus u un una unas uno unos usted ustedes vos y ya yo
hola holis buenas buenos buen gracias saludos porfa favor quisiera queria quiero saber consulta consultar
pregunta preguntar puedo podes pueden podria necesito
""".split())


def fold(text: str) -> str:
    """Lower-case and drop accents (á→a, ü→u), keeping ñ.

    ñ is a letter of its own in Spanish, not an accented n: folding it would merge año/ano, caña/cana,
    peña/pena and uña/una, and the phone keyboards of Spanish speakers have the key, so users do type it.
    """
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text.casefold()):
        if unicodedata.combining(char):
            if char == _COMBINING_TILDE and out and out[-1] == "n":
                out[-1] = "ñ"
            continue
        out.append(char)
    return "".join(out)


def stem(word: str) -> str:
    """Light Spanish stemming of a folded word: plurals, the verb's plural -n, and the gender vowel.

    In the spirit of Savoy's light stemmer (the one Lucene ships), but working on folded text so that
    "envío", "envio" and "envíos" meet, and also folding four-letter words (mesa/mesas).
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ces") and len(word) > 4:
        word = word[:-3] + "z"  # luces → luz, veces → vez
    elif word.endswith("es") and len(word) > 4 and word[-3] not in "aeiou":
        word = word[:-2]  # inscripciones → inscripcion, meses → mes
    elif word.endswith("s") and word[-2] in "aeo":
        word = word[:-1]  # horarios → horario
    if len(word) >= 5 and word[-2:] in ("an", "en"):
        word = word[:-1]  # tardan → tarda, abren → abre (and imagen → image, consistently with imágenes)
    if len(word) > 3 and word[-1] in "aeo":
        word = word[:-1]  # horario → horari, abierta/abierto → abiert
    return word


def analyze(text: str) -> list[str]:
    """The search terms of a text, in order: folded words, stop words removed, stemmed."""
    return [stem(word) for word in _WORD.findall(fold(text)) if word not in STOP_WORDS]


def slug(text: str) -> str:
    """An ASCII identifier made of the words of `text` (vector ids must be ASCII)."""
    words = _WORD.findall(fold(text).replace("ñ", "n"))
    return "-".join(word for word in words if word.isascii()) or "x"
