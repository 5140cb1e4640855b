"""Rich outgoing messages (reply buttons, lists, images, documents, locations): one typed model per kind, each
building its Cloud API object and the readable text kept in the timeline and sent where the rich form cannot go.

Limits are Meta's (interactive reply buttons, interactive list, image, document and location message pages of the
Cloud API documentation; WHATSAPP.md §11): over-length fields are refused here, since Meta may accept them and never
deliver (chatwoot#8288)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from core.storage.records import NewMessage, Role

# What neither database keeps in a text (JSON can carry it as an escape): refused with a 422, not a 500 later.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TEXT_LIMIT = 4096  # a text message's body: what a fallback must fit in
# Meta's kinds of message a rich message goes out as (the `type` of the send and of the stored message).
RICH_TYPES = frozenset({"interactive", "image", "document", "location"})


def _storable(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise ValueError("NUL characters and lone surrogates cannot be sent")
    return value


def _link(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s]+", value):
        raise ValueError("a link is an http:// or https:// URL without spaces, where Meta can fetch the file")
    return value


def _limited(maximum: int, minimum: int = 1) -> Any:
    return Annotated[str, Field(min_length=minimum, max_length=maximum), AfterValidator(_storable)]


Header = _limited(60)
Footer = _limited(60)
Link = Annotated[str, Field(max_length=2048), AfterValidator(_link)]
MediaId = Annotated[str, Field(pattern=r"^[0-9]{1,64}$", description="the id of media uploaded to Meta (digits)")]
Caption = _limited(1024)


class _Rich(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def message_type(self) -> str:
        """Meta's `type` of the send: interactive, image, document or location."""
        raise NotImplementedError

    def content(self) -> dict[str, Any]:
        """The object Meta reads under the `type` key of the send."""
        raise NotImplementedError

    def readable(self) -> str:
        """The message as plain text: the timeline's, the model's, and the text fallback."""
        raise NotImplementedError


class Button(BaseModel):
    """One reply button: `title` is what the person sees and, when tapped, what the bot reads back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: _limited(20)  # type: ignore[valid-type]
    id: _limited(256) | None = Field(default=None, description="returned when tapped; default: its position, 1-3")  # type: ignore[valid-type]


class ReplyButtons(_Rich):
    """A text with up to three buttons to tap (interactive `button`)."""

    type: Literal["buttons"] = "buttons"
    body: _limited(1024)  # type: ignore[valid-type]
    buttons: list[Button] = Field(min_length=1, max_length=3)
    header: Header | None = None  # type: ignore[valid-type]
    footer: Footer | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _unique(self) -> ReplyButtons:
        titles = [b.title for b in self.buttons]
        if len(set(titles)) != len(titles):
            raise ValueError("buttons: each title must be different (Meta refuses repeated titles)")
        ids = self.button_ids()
        if len(set(ids)) != len(ids):
            raise ValueError("buttons: each id must be different")
        return self

    def button_ids(self) -> list[str]:
        return [b.id or str(n) for n, b in enumerate(self.buttons, start=1)]

    @property
    def message_type(self) -> str:
        return "interactive"

    def content(self) -> dict[str, Any]:
        interactive: dict[str, Any] = {"type": "button"}
        if self.header:
            interactive["header"] = {"type": "text", "text": self.header}
        interactive["body"] = {"text": self.body}
        if self.footer:
            interactive["footer"] = {"text": self.footer}
        interactive["action"] = {"buttons": [{"type": "reply", "reply": {"id": id_, "title": b.title}}
                                             for id_, b in zip(self.button_ids(), self.buttons)]}
        return interactive

    def readable(self) -> str:
        options = [f"{n}. {b.title}" for n, b in enumerate(self.buttons, start=1)]
        return _join(self.header, self.body, "\n".join(options), self.footer)


class Row(BaseModel):
    """One option of a list: `title` (and `description`) come back as the person's reply when chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: _limited(24)  # type: ignore[valid-type]
    description: _limited(72) | None = None  # type: ignore[valid-type]
    id: _limited(200) | None = Field(default=None, description="returned when chosen; default: its position, 1-10")  # type: ignore[valid-type]


class Section(BaseModel):
    """A titled group of rows (the title is required when the list has more than one section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: _limited(24) | None = None  # type: ignore[valid-type]
    rows: list[Row] = Field(min_length=1, max_length=10)


class ListMessage(_Rich):
    """A text with a button that opens a list of options, in sections (interactive `list`)."""

    type: Literal["list"] = "list"
    body: _limited(4096)  # type: ignore[valid-type]
    button: _limited(20)  # type: ignore[valid-type]
    sections: list[Section] = Field(min_length=1, max_length=10)
    header: Header | None = None  # type: ignore[valid-type]
    footer: Footer | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _within_limits(self) -> ListMessage:
        rows = sum(len(s.rows) for s in self.sections)
        if rows > 10:
            raise ValueError(f"sections: at most 10 rows in all sections together ({rows} given)")
        if len(self.sections) > 1 and not all(s.title for s in self.sections):
            raise ValueError("sections: each section needs a title when there is more than one")
        ids = [id_ for _, id_ in self._rows()]
        if len(set(ids)) != len(ids):
            raise ValueError("sections: each row id must be different")
        return self

    def _rows(self) -> list[tuple[Row, str]]:
        rows = [row for section in self.sections for row in section.rows]
        return [(row, row.id or str(n)) for n, row in enumerate(rows, start=1)]

    @property
    def message_type(self) -> str:
        return "interactive"

    def content(self) -> dict[str, Any]:
        ids = iter(id_ for _, id_ in self._rows())
        sections = []
        for section in self.sections:
            rows = []
            for row in section.rows:
                item = {"id": next(ids), "title": row.title}
                if row.description:
                    item["description"] = row.description
                rows.append(item)
            sections.append({"title": section.title, "rows": rows} if section.title else {"rows": rows})
        interactive: dict[str, Any] = {"type": "list"}
        if self.header:
            interactive["header"] = {"type": "text", "text": self.header}
        interactive["body"] = {"text": self.body}
        if self.footer:
            interactive["footer"] = {"text": self.footer}
        interactive["action"] = {"button": self.button, "sections": sections}
        return interactive

    def readable(self) -> str:
        groups = []
        for section in self.sections:
            lines = [f"- {row.title}" + (f": {row.description}" if row.description else "") for row in section.rows]
            groups.append("\n".join([f"{section.title}:", *lines] if section.title else lines))
        return _join(self.header, self.body, "\n\n".join(groups), self.footer)


class _Media(_Rich):
    link: Link | None = None
    media_id: MediaId | None = None
    caption: Caption | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_source(self) -> _Media:
        if (self.link is None) == (self.media_id is None):
            raise ValueError("give either link (a URL Meta fetches) or media_id (uploaded media), not both or neither")
        return self

    def content(self) -> dict[str, Any]:
        media: dict[str, Any] = {"id": self.media_id} if self.media_id else {"link": self.link}
        if self.caption:
            media["caption"] = self.caption
        return media

    def readable(self) -> str:
        label = f"[{self.message_type}]"
        return _join(" ".join(filter(None, (label, self.caption))), self.link)


class ImageMessage(_Media):
    """An image by link or uploaded media id, with an optional caption."""

    type: Literal["image"] = "image"

    @property
    def message_type(self) -> str:
        return "image"


class DocumentMessage(_Media):
    """A document by link or uploaded media id, with an optional caption and the file name people see."""

    type: Literal["document"] = "document"
    filename: _limited(240) | None = None  # type: ignore[valid-type]

    @property
    def message_type(self) -> str:
        return "document"

    def content(self) -> dict[str, Any]:
        media = super().content()
        if self.filename:
            media["filename"] = self.filename
        return media

    def readable(self) -> str:
        label = f"[document{': ' + self.filename if self.filename else ''}]"
        return _join(" ".join(filter(None, (label, self.caption))), self.link)


class LocationMessage(_Rich):
    """A place on the map: coordinates in decimal degrees, with an optional name and address."""

    type: Literal["location"] = "location"
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    name: _limited(1000) | None = None  # type: ignore[valid-type]
    address: _limited(1000) | None = None  # type: ignore[valid-type]

    @property
    def message_type(self) -> str:
        return "location"

    def content(self) -> dict[str, Any]:
        location: dict[str, Any] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.name:
            location["name"] = self.name
        if self.address:
            location["address"] = self.address
        return location

    def maps_link(self) -> str:
        """Google Maps' documented search URL for the coordinates (opens the maps app on a phone)."""
        return f"https://www.google.com/maps/search/?api=1&query={quote(f'{self.latitude},{self.longitude}')}"

    def readable(self) -> str:
        place = ", ".join(filter(None, (self.name, self.address)))
        return _join(f"📍 {place}" if place else "📍", self.maps_link())


def kind_of(value: Any) -> str:
    """The `type` a message body names (text when it names none): how a union of kinds picks its model."""
    return value.get("type", "text") if isinstance(value, dict) else getattr(value, "type", "text")


RichMessage = Annotated[
    Annotated[ReplyButtons, Tag("buttons")] | Annotated[ListMessage, Tag("list")]
    | Annotated[ImageMessage, Tag("image")] | Annotated[DocumentMessage, Tag("document")]
    | Annotated[LocationMessage, Tag("location")],
    Discriminator(kind_of),
]
RichKind = ReplyButtons | ListMessage | ImageMessage | DocumentMessage | LocationMessage


def fallback_text(message: RichKind) -> str:
    """What goes out as text where the rich form is not allowed: its readable text, within a text's limit."""
    text = message.readable()
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "…"


def stored_payload(message: RichKind) -> dict[str, Any]:
    """The stored message's payload: the Cloud API object under its type (what the outbox sends) and the kind."""
    return {"kind": message.type, message.message_type: message.content()}


def rich_message(message: RichKind, role: Role) -> NewMessage:
    """The outbound message (pending) that the outbox sends as `message`, or as its text where it cannot go."""
    return NewMessage(direction="out", role=role, type=message.message_type, text=fallback_text(message),
                      payload=stored_payload(message), status="pending")


def _join(*parts: str | None) -> str:
    return "\n\n".join(part for part in parts if part)
