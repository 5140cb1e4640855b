"""Emprendemy's course catalogue: its shape (validated on every write), and how tools find courses in it.

The catalogue is a JSON array of courses kept in the store under the key `courses`; `courses.json` seeds it the
first time the server starts, after which `PUT /api/v1/emprendemy/courses` replaces it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, RootModel, StringConstraints, model_validator

DOCUMENT = "courses"

Modality = Literal["online en vivo", "a tu ritmo"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class Course(BaseModel):
    """One course as the school offers it."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)] = Field(
        description="slug: lower-case letters, digits and hyphens (used in the enrollment URL)")
    name: Text
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    topics: list[Text] = []
    price_ars: int = Field(gt=0, description="total price in Argentine pesos")
    duration: Text
    modality: Modality
    next_start: date
    enrollment_url: HttpUrl


def duplicates(courses: list[Course]) -> list[tuple[int, str, str]]:
    """(index, field, message) for each course repeating an earlier one's id or name (names without case/accents)."""
    problems: list[tuple[int, str, str]] = []
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, course in enumerate(courses):
        if course.id in ids:
            problems.append((index, "id", f"duplicate course id {course.id!r} (also course {ids[course.id]})"))
        if fold(course.name) in names:
            earlier = names[fold(course.name)]
            problems.append((index, "name", f"duplicate course name {course.name!r} (also course {earlier})"))
        ids.setdefault(course.id, index)
        names.setdefault(fold(course.name), index)
    return problems


class Catalogue(RootModel[list[Course]]):
    """Every course, at least one; ids and names are unique."""

    root: list[Course] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        problems = duplicates(self.root)
        if problems:
            raise ValueError("; ".join(f"course {index}: {message}" for index, _, message in problems))
        return self


# Words that say nothing about which course is meant.
STOP_WORDS = frozenset("""
a al algo algun alguna alguno al cual cuales curso cursos de del el en es esta este hay la las lo los me mi
o para por que quiero saber se sobre su tenes tienen tu un una uno y con como sin
""".split())


def fold(text: str) -> str:
    """Lower case without accents (ñ included: users type "diseno" and "diseño" alike)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", fold(text))


def _stem(word: str) -> str:
    """Drop a plural ending so "ventas" meets "venta" and "redes" meets "red"."""
    if len(word) > 4 and word.endswith("es"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s"):
        return word[:-1]
    return word


def query_terms(query: str) -> list[str]:
    return [_stem(word) for word in words(query) if word not in STOP_WORDS]


def score(course: Course, terms: list[str]) -> int:
    """How many of the terms the course matches (a word of it starting with the term); its name counts double."""
    name = words(course.name) + words(course.id.replace("-", " "))
    rest = words(" ".join([course.summary, *course.topics]))
    total = 0
    for term in terms:
        if any(word.startswith(term) for word in name):
            total += 2
        elif any(word.startswith(term) for word in rest):
            total += 1
    return total


def search(courses: list[Course], query: str) -> list[Course]:
    """Courses matching the query, best first; every course when the query names nothing specific."""
    terms = query_terms(query)
    if not terms:
        return list(courses)
    scored = [(score(course, terms), index, course) for index, course in enumerate(courses)]
    return [course for points, _, course in sorted(scored, key=lambda item: (-item[0], item[1])) if points > 0]


def find(courses: list[Course], given: str) -> tuple[Course | None, list[Course]]:
    """The course `given` names (its id, its name, or words only it matches fully), else (None, candidates)."""
    wanted = fold(given).strip()
    for course in courses:
        if wanted in (course.id, fold(course.name)):
            return course, [course]
    terms = query_terms(given)
    if not terms:
        return None, []
    full = [course for course in courses if all(score(course, [term]) for term in terms)]
    if len(full) == 1:
        return full[0], full
    in_name = [course for course in full if all(score(course, [term]) == 2 for term in terms)]
    if len(in_name) == 1:  # "ventas" is the sales course, though another one mentions sales in its summary
        return in_name[0], in_name
    return None, full or search(courses, given)[:3]
