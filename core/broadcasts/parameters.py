"""A broadcast's parameters: fixed values, or contact fields filled in per person ("{{contact.name}}")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from core.storage.broadcast_records import Recipient

# The contact fields a parameter may name, and what each takes for a person.
FIELDS = ("name", "email", "user_key")
_FIELD = re.compile(r"\{\{\s*contact\.([A-Za-z_]+)\s*\}\}")
# What a field without a value becomes (WhatsApp refuses an empty parameter).
MISSING = "-"

Parameters = Sequence[str] | Mapping[str, str]


class ParameterError(ValueError):
    """A parameter names a contact field that does not exist."""


def check_fields(parameters: Parameters) -> None:
    """Refuse a parameter that names an unknown contact field, saying which ones exist."""
    for value in _values(parameters):
        for name in _FIELD.findall(value):
            if name not in FIELDS:
                raise ParameterError(f"parameter {value!r} names contact.{name}; contact fields are: "
                                     + ", ".join(f"{{{{contact.{item}}}}}" for item in FIELDS))


def for_person(parameters: Parameters, recipient: Recipient) -> Parameters:
    """The parameters with each contact field replaced by this person's value (or "-" when they have none)."""
    values = {"name": recipient.name, "email": recipient.email, "user_key": recipient.user_key}

    def fill(value: str) -> str:
        return _FIELD.sub(lambda match: values.get(match.group(1)) or MISSING, value).strip() or MISSING

    if isinstance(parameters, Mapping):
        return {key: fill(value) for key, value in parameters.items()}
    return [fill(value) for value in parameters]


def sample(parameters: Parameters) -> Parameters:
    """The parameters as a person with every field set would get them (to validate against the template)."""
    example = Recipient(id=0, broadcast_id=0, user_key="5491100000000", state="queued", message_id=None,
                        conversation_id=None, opted_out=False, name="Name", email="name@example.com", attempts=0)
    return for_person(parameters, example)


def _values(parameters: Parameters) -> list[str]:
    return list(parameters.values()) if isinstance(parameters, Mapping) else list(parameters)
