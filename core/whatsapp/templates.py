"""WhatsApp message templates: what Meta's list gives, the parameters each takes, and the message that fills them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

# {{1}} in a positional template, {{first_name}} in a named one (Meta allows lower case, digits and _).
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# Header formats that take a media parameter (a link or an uploaded media id) instead of text.
_MEDIA_HEADERS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
# Webhook events that are not a status of their own: REINSTATED means approved again.
_EVENT_STATUS = {"REINSTATED": "APPROVED"}
APPROVED = "APPROVED"

ParameterKind = Literal["text", "image", "video", "document", "coupon_code"]


class TemplateError(ValueError):
    """A template send that does not fit the stored template; the message says what is wrong."""


@dataclass(frozen=True)
class Parameter:
    """One value a template needs: in `component` (header, body, button), by `name` ("1" or "first_name")."""

    component: str
    name: str
    kind: ParameterKind = "text"
    button_index: int | None = None
    example: str | None = None

    @property
    def key(self) -> str:
        """The name that addresses it in any template: header.1, body.first_name, button0.1, header.media."""
        place = f"button{self.button_index}" if self.component == "button" else self.component
        return f"{place}.{self.name}"


@dataclass(frozen=True)
class Template:
    """A message template of a client, as Meta last described it."""

    name: str
    language: str
    category: str
    status: str
    components: list[dict[str, Any]] = field(repr=False)
    parameter_format: str = "POSITIONAL"
    template_id: str | None = None
    quality: str | None = None
    updated_at: datetime | None = None

    @property
    def is_named(self) -> bool:
        return self.parameter_format.upper() == "NAMED"

    def parameters(self) -> list[Parameter]:
        """Every value the template needs, in the order a list of values fills them: header, body, buttons."""
        found: list[Parameter] = []
        for component in self.components:
            kind = str(component.get("type", "")).upper()
            if kind == "HEADER":
                media = _MEDIA_HEADERS.get(str(component.get("format", "TEXT")).upper())
                if media is not None:
                    found.append(Parameter("header", "media", media))  # type: ignore[arg-type]
                else:
                    examples = _examples(component.get("example"), "header")
                    found += [Parameter("header", name, example=examples.get(name))
                              for name in placeholders(component.get("text"))]
            elif kind == "BODY":
                examples = _examples(component.get("example"), "body")
                found += [Parameter("body", name, example=examples.get(name))
                          for name in placeholders(component.get("text"))]
            elif kind == "BUTTONS":
                for index, button in enumerate(_dicts(component.get("buttons"))):
                    sub_type = str(button.get("type", "")).upper()
                    if sub_type == "URL":
                        found += [Parameter("button", name, button_index=index, example=_first(button.get("example")))
                                  for name in placeholders(button.get("url"))]
                    elif sub_type == "COPY_CODE":
                        found.append(Parameter("button", "coupon_code", "coupon_code", index,
                                               _first(button.get("example"))))
        return found

    def bind(self, values: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
        """Each parameter's key with its value; TemplateError names what is missing, extra or of the wrong count."""
        wanted = self.parameters()
        if isinstance(values, Mapping):
            return self._bind_names(wanted, values)
        if len(values) != len(wanted):
            listed = ", ".join(p.key for p in wanted) or "none"
            raise TemplateError(f"template {self.name} ({self.language}) takes {len(wanted)} parameter"
                                f"{'' if len(wanted) == 1 else 's'} ({listed}); {len(values)} given")
        return {p.key: str(value) for p, value in zip(wanted, values)}

    def _bind_names(self, wanted: list[Parameter], values: Mapping[str, str]) -> dict[str, str]:
        by_key = {p.key: p for p in wanted}
        # A short name (first_name, 1) is enough where it is not ambiguous.
        short: dict[str, list[Parameter]] = {}
        for p in wanted:
            short.setdefault(p.name, []).append(p)
        bound: dict[str, str] = {}
        for given, value in values.items():
            if given in by_key:
                target = by_key[given]
            elif len(short.get(given, [])) == 1:
                target = short[given][0]
            elif given in short:
                options = ", ".join(p.key for p in short[given])
                raise TemplateError(f"parameter {given!r} of template {self.name} is ambiguous: use one of {options}")
            else:
                listed = ", ".join(p.key for p in wanted) or "none"
                raise TemplateError(f"template {self.name} ({self.language}) has no parameter {given!r} "
                                    f"(it takes: {listed})")
            if target.key in bound:
                raise TemplateError(f"parameter {target.key} of template {self.name} is given twice")
            bound[target.key] = str(value)
        missing = [p.key for p in wanted if p.key not in bound]
        if missing:
            raise TemplateError(f"template {self.name} ({self.language}) is missing parameter"
                                f"{'' if len(missing) == 1 else 's'} {', '.join(missing)}")
        return bound

    def message(self, bound: Mapping[str, str]) -> dict[str, Any]:
        """The Cloud API `template` object of a send, its components filled with the bound values."""
        named = self.is_named
        groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
        sub_types: dict[int, str] = {}
        for p in self.parameters():
            value = bound[p.key]
            if p.kind == "text":
                item: dict[str, Any] = {"type": "text", "text": value}
                if named and p.component != "button":  # URL buttons stay {{1}} even in a named template
                    item["parameter_name"] = p.name
            elif p.kind == "coupon_code":
                item = {"type": "coupon_code", "coupon_code": value}
            else:
                item = {"type": p.kind, p.kind: {"id": value} if value.isdigit() else {"link": value}}
            groups.setdefault((p.component, p.button_index), []).append(item)
            if p.button_index is not None:
                sub_types[p.button_index] = "copy_code" if p.kind == "coupon_code" else "url"
        components: list[dict[str, Any]] = []
        for (component, index), parameters in groups.items():
            if component == "button":
                components.append({"type": "button", "sub_type": sub_types[index or 0], "index": str(index),
                                   "parameters": parameters})
            else:
                components.append({"type": component, "parameters": parameters})
        message: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if components:
            message["components"] = components
        return message

    def outline(self) -> list[dict[str, Any]]:
        """Its parts for people choosing it: header, body, footer and each button, with the parameters each takes."""
        wanted = self.parameters()
        parts: list[dict[str, Any]] = []
        for component in self.components:
            kind = str(component.get("type", "")).lower()
            if kind == "buttons":
                for index, button in enumerate(_dicts(component.get("buttons"))):
                    parts.append({"type": "button", "index": index, "sub_type": str(button.get("type", "")).lower(),
                                  "text": button.get("text"),
                                  "parameters": [p for p in wanted if p.component == "button" and p.button_index == index]})
            elif kind in ("header", "body", "footer"):
                parts.append({"type": kind, "format": component.get("format"), "text": component.get("text"),
                              "parameters": [p for p in wanted if p.component == kind]})
        return parts

    def render(self, bound: Mapping[str, str]) -> str:
        """The text a person reads: header, body and footer with the values in, buttons as [labels]."""
        lines: list[str] = []
        for component in self.components:
            kind = str(component.get("type", "")).upper()
            if kind in ("HEADER", "BODY", "FOOTER"):
                place = kind.lower()
                media = _MEDIA_HEADERS.get(str(component.get("format", "TEXT")).upper()) if kind == "HEADER" else None
                if media is not None:
                    lines.append(f"[{media}]")
                elif component.get("text"):
                    lines.append(_PLACEHOLDER.sub(lambda m: bound.get(f"{place}.{m.group(1)}", m.group(0)),
                                                  str(component["text"])))
            elif kind == "BUTTONS":
                labels = [str(b.get("text")) for b in _dicts(component.get("buttons")) if b.get("text")]
                if labels:
                    lines.append(" ".join(f"[{label}]" for label in labels))
        return "\n".join(lines)


def placeholders(text: Any) -> list[str]:
    """The placeholder names of a text, each once: positional ones by number, named ones as they first appear."""
    if not isinstance(text, str):
        return []
    names = list(dict.fromkeys(_PLACEHOLDER.findall(text)))
    return sorted(names, key=int) if names and all(name.isdigit() for name in names) else names


def from_graph(item: Mapping[str, Any]) -> Template | None:
    """A template from an item of `GET /{waba-id}/message_templates`' `data`; None without a name or language."""
    name, language = item.get("name"), item.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        return None
    quality = item.get("quality_score")
    return Template(
        name=name, language=language, category=str(item.get("category") or "UNKNOWN").upper(),
        status=str(item.get("status") or "UNKNOWN").upper(), components=_dicts(item.get("components")),
        parameter_format=str(item.get("parameter_format") or "POSITIONAL").upper(),
        template_id=str(item["id"]) if item.get("id") is not None else None,
        quality=str(quality.get("score")) if isinstance(quality, Mapping) and quality.get("score") else None)


def read_templates_file(path: Path) -> list[dict[str, Any]]:
    """The templates of a file shaped like Meta's list (`{"data": [...]}`) or a bare list; ValueError when not."""
    document = json.loads(path.read_text(encoding="utf-8"))
    items = document.get("data") if isinstance(document, dict) else document
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError('expected a JSON list of templates, or {"data": [...]} as the Graph API gives')
    return items


def status_of_event(event: str) -> str:
    """The template status a `message_template_status_update` event leaves it in."""
    upper = event.strip().upper()
    return _EVENT_STATUS.get(upper, upper)


def _examples(example: Any, place: str) -> dict[str, str]:
    """Meta's sample values of a header or body, by placeholder name (positional: "1", "2"…)."""
    if not isinstance(example, Mapping):
        return {}
    named = example.get(f"{place}_text_named_params")
    if isinstance(named, list):
        return {str(p["param_name"]): str(p.get("example", "")) for p in named
                if isinstance(p, Mapping) and p.get("param_name")}
    positional = example.get(f"{place}_text")
    if isinstance(positional, list) and positional:
        row = positional[0] if isinstance(positional[0], list) else positional  # body: [[...]], header: [...]
        return {str(n): str(v) for n, v in enumerate(row, start=1)}
    return {}


def _first(example: Any) -> str | None:
    return str(example[0]) if isinstance(example, list) and example else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
