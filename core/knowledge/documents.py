"""A client's knowledge files (`clients/<name>/knowledge/*.md`) and how they split into passages."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from core.knowledge.base import Document, Passage
from core.knowledge.text import slug

KNOWLEDGE_FOLDER = "knowledge"
MAX_PASSAGE_CHARS = 1200

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def clients_dir(package: str = "clients") -> Path:
    """The folder of the Python package that holds the client folders."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"no package named {package!r}")
    return Path(next(iter(spec.submodule_search_locations)))


def knowledge_dir(clients_root: Path, client: str) -> Path:
    return clients_root / client / KNOWLEDGE_FOLDER


def load_documents(folder: Path) -> list[Document]:
    """Every `*.md` file of a knowledge folder, by name; none when the folder does not exist."""
    if not folder.is_dir():
        return []
    return [Document(path.name, path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.md"))]


def split_passages(document: Document, *, max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """Cut a Markdown document into passages: one per section, or per run of paragraphs in a long one.

    A passage's id is `<file>:<heading path>:<n>`, ASCII, and stays the same when the wording inside a
    section changes, so a re-sync overwrites rather than duplicates.
    """
    passages: list[Passage] = []
    per_heading: Counter[str] = Counter()
    source_slug = slug(Path(document.source).stem)
    for titles, blocks in _sections(document.text):
        title = " > ".join(titles)
        heading_slug = slug(title) if titles else "intro"
        for text in _group(blocks, max_chars):
            per_heading[heading_slug] += 1
            passage_id = f"{source_slug}:{heading_slug}:{per_heading[heading_slug]}"[:512]
            passages.append(Passage(id=passage_id, text=text, source=document.source, title=title))
    return passages


def split_all(documents: Iterable[Document]) -> list[Passage]:
    return [passage for document in documents for passage in split_passages(document)]


def _sections(text: str) -> list[tuple[list[str], list[str]]]:
    """(heading path, paragraphs) for each section with a body, in document order."""
    sections: list[tuple[list[str], list[str]]] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    lines: list[str] = []
    in_fence = False

    def end_block() -> None:
        if lines:
            blocks.append("\n".join(lines).strip("\n"))
            lines.clear()

    def end_section() -> None:
        end_block()
        if blocks:
            sections.append(([title for _, title in stack], blocks.copy()))
            blocks.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            end_section()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
        elif not line.strip() and not in_fence:
            end_block()
        else:
            lines.append(line.rstrip())
    end_section()
    return sections


def _group(blocks: list[str], max_chars: int) -> list[str]:
    """Join paragraphs into runs of at most `max_chars` (a longer single paragraph stays whole)."""
    runs: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + 2 + len(block) > max_chars:
            runs.append(current)
            current = block
        else:
            current = f"{current}\n\n{block}" if current else block
    if current:
        runs.append(current)
    return runs
