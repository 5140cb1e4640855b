"""Model Markdown as WhatsApp formatting, split into messages under WhatsApp's text limit."""

from __future__ import annotations

import re

# A text body holds at most 4096 characters (WHATSAPP.md §11); keep a margin for safety.
MAX_TEXT_CHARS = 4096

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_BULLET = re.compile(r"^(\s*)[*+]\s+", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def to_whatsapp(markdown: str) -> str:
    """Convert the Markdown models write to WhatsApp's *bold*, _italic_, ~strike~ and ```mono```."""
    blocks: list[str] = []

    def keep_block(match: re.Match[str]) -> str:
        blocks.append(match.group(1).rstrip("\n"))
        return f"\x00{len(blocks) - 1}\x00"

    text = _CODE_BLOCK.sub(keep_block, markdown.replace("\r\n", "\n"))
    text = _BULLET.sub(lambda m: f"{m.group(1)}- ", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _BOLD.sub(r"*\2*", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _HEADING.sub(r"*\1*", text)
    text = _LINK.sub(lambda m: m.group(2) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: f"```{blocks[int(m.group(1))]}```", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_message(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Split into parts of at most `limit` characters, at paragraph, then line, then sentence, then word breaks."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _best_cut(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _best_cut(text: str, limit: int) -> int:
    window = text[: limit + 1]
    for separator in ("\n\n", "\n"):
        index = window.rfind(separator, 0, limit)
        if index > limit // 3:
            return index
    sentence_ends = [m.start() for m in _SENTENCE_END.finditer(window) if m.start() <= limit]
    if sentence_ends and sentence_ends[-1] > limit // 3:
        return sentence_ends[-1]
    space = window.rfind(" ", 0, limit)
    return space if space > limit // 3 else limit
