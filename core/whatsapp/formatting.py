"""Model Markdown as WhatsApp formatting, split into messages under WhatsApp's text limit."""

from __future__ import annotations

import re

# A text body holds at most 4096 characters (WHATSAPP.md §11); keep a margin for safety.
MAX_TEXT_CHARS = 4096

# Every pattern runs in time linear in the text: a reply is formatted on the event loop, and the model (or a
# user who gets it to repeat something) decides what the text looks like. A pattern whose opening marker can
# fail only by scanning to the end of the line (or text) carries a second alternative that consumes that dead
# stretch, so no later start position scans it again; in each case the skipped positions are ones the plain
# pattern would have tried and failed on, so the output is the same as with the plain pattern.

# ```lang\n…``` → kept verbatim. When the first opener finds no closer, no later one can: the rest is plain.
_CODE_BLOCK = re.compile(r"```[^\n]*+\n(.*?)```|```[\s\S]*", re.DOTALL)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(\*\*|__)(?=\S)(.*)")
# Once one kind of bold opener finds no closer on a line, neither does any later one of that kind.
_BOLD_ONLY = {
    "**": re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|\*\*(?=\S).*"),
    "__": re.compile(r"__(?=\S)(.+?)(?<=\S)__|__(?=\S).*"),
}
_ITALIC_STAR = re.compile(r"(?<![\*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\*\w])")
# ~~x~~ → ~x~: the inner group holds one tilde of each marker; a dead opener keeps the rest of its line.
_STRIKE = re.compile(r"~(~(?=\S).+?(?<=\S)~)~|(~~(?=\S).*)")
# A heading line loses its #s and trailing #s: "## Title ##" → "*Title*". The text is the shortest one after
# which only spaces and #s remain (found greedily, without retrying every end), then the trailing spaces and
# #s, which, as Markdown's `\s*#*\s*$` always did, may run on over blank lines. A heading with nothing but
# whitespace after it to the end of the text keeps its last non-newline character.
_HEADING = re.compile(
    r"^#{1,6}+\s++"
    r"(?>(.(?:.*[^\s#])?(?:(?:[^\S\n]|#)*#(?=[^\S\n]++#++[^\S\n]*+$))?))"
    r"(?:\s*+#++\s*$|\s*$)"
    r"|^#{1,6}+\s+?([^\S\n])\n*\Z",
    re.MULTILINE,
)
# [text](url). An opener whose link fails is skipped up to its `]` (every opener before that `]` fails alike),
# and past every `]` inside an unclosed URL after it (links starting there would end in the same unclosed URL).
_LINK = re.compile(
    r"\[([^\]]++)\]\((https?://[^)\s]++)\)"
    r"|\[[^\]]*+(?:\]\(https?://[^)\s]*\](?=[^)\s\]]*+(?![)\]])))?"
)
_BULLET = re.compile(r"^([^\S\n]*)[*+]\s+", re.MULTILINE)
_BLOCK_MARK = re.compile(r"\x00(\d+)\x00")
_BLANK_LINES = re.compile(r"\n{3,}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_NON_SPACE = re.compile(r"\S")


def to_whatsapp(markdown: str) -> str:
    """Convert the Markdown models write to WhatsApp's *bold*, _italic_, ~strike~ and ```mono```."""
    blocks: list[str] = []

    def keep_block(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)
        blocks.append(match.group(1).rstrip("\n"))
        return f"\x00{len(blocks) - 1}\x00"

    # NUL marks the code blocks set aside below, and shows as nothing on a phone: a model's own NULs go.
    text = _CODE_BLOCK.sub(keep_block, markdown.replace("\x00", "").replace("\r\n", "\n"))
    text = _BULLET.sub(r"\1- ", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _BOLD.sub(_bold, text)
    text = _STRIKE.sub(r"\1\2", text)
    text = _HEADING.sub(r"*\1\2*", text)
    text = _LINK.sub(_link, text)
    text = _BLOCK_MARK.sub(lambda m: f"```{blocks[int(m.group(1))]}```", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def _bold(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return f"*{match.group(2)}*"
    dead = match.group(3)
    other = "__" if dead == "**" else "**"
    return dead + _BOLD_ONLY[other].sub(_bold_only, match.group(4))


def _bold_only(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) is None else f"*{match.group(1)}*"


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    if label is None:
        return match.group(0)
    return url if label == url else f"{label} ({url})"


def split_message(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Split into parts of at most `limit` characters, at paragraph, then line, then sentence, then word breaks."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    start, end = 0, len(text)
    # Offsets into the one string, not slices of what is left: each part costs its own length only.
    while end - start > limit:
        cut = start + _best_cut(text, start, limit)
        parts.append(text[start:cut].rstrip())
        following = _NON_SPACE.search(text, cut)
        start = following.start() if following else end
    if start < end:
        parts.append(text[start:])
    return parts


def _best_cut(text: str, start: int, limit: int) -> int:
    """Where to cut text[start:], as an offset from start (the text there does not begin with whitespace)."""
    stop = start + limit
    for separator in ("\n\n", "\n"):
        index = text.rfind(separator, start, stop) - start
        if index > limit // 3:
            return index
    sentence_ends = [m.start() - start for m in _SENTENCE_END.finditer(text, start, stop + 1) if m.start() <= stop]
    if sentence_ends and sentence_ends[-1] > limit // 3:
        return sentence_ends[-1]
    space = text.rfind(" ", start, stop) - start
    return space if space > limit // 3 else limit
