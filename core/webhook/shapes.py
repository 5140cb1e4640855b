"""The plain shapes nearly every delivery has, checked without building pydantic models.

Validating Meta's message, its contacts and its metadata with the models costs about 4 us a delivery, a sizeable
part of an acknowledgement's CPU. A part that fits one of these shapes (only strict JSON types: what the model
would take as it is) is read straight from the decoded JSON; anything else (another message type, a field the model
coerces or refuses) goes to the models, which decide. A shape names the fields it checks; a field the model declares
that the shape does not name sends the part to the model too, so no field is ever read without its check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from pydantic import BaseModel

from core.webhook.payloads import Contact, Message, Metadata, MessagesValue, Pricing, Profile, Status, StatusConversation, Text

NoneType = type(None)
TEXT_OR_NONE = (str, NoneType)

Rule = Union[tuple[type, ...], "Shape", list["Shape"]]


class Shape:
    """The strict JSON types a model's fields may have for the part to be read without the model."""

    __slots__ = ("declared", "fields", "nullable")

    def __init__(self, model: type[BaseModel], fields: Mapping[str, Rule], *, nullable: bool = False) -> None:
        self.declared = frozenset(info.alias or name for name, info in model.model_fields.items())
        unknown = set(fields) - self.declared
        assert not unknown, f"{model.__name__} declares no {unknown}"
        self.fields = dict(fields)
        self.nullable = nullable  # the model's field is `X | None`: JSON null fits

    def fits(self, value: Any) -> bool:
        """Whether `value` is a JSON object whose declared fields are all named here, each of its rule's type."""
        if type(value) is not dict:
            return value is None and self.nullable
        fields = self.fields
        for key, item in value.items():
            rule = fields.get(key)
            if rule is None:
                if key in self.declared:
                    return False
            elif type(rule) is tuple:
                if type(item) not in rule:
                    return False
            elif type(rule) is list:
                if type(item) is not list or not all(map(rule[0].fits, item)):
                    return False
            elif not rule.fits(item):  # type: ignore[union-attr]
                return False
        return True


_PROFILE = Shape(Profile, {"name": TEXT_OR_NONE, "username": TEXT_OR_NONE}, nullable=True)
_CONTACT = Shape(Contact, {"wa_id": TEXT_OR_NONE, "user_id": TEXT_OR_NONE, "profile": _PROFILE})
_METADATA = Shape(Metadata, {"display_phone_number": TEXT_OR_NONE, "phone_number_id": TEXT_OR_NONE})

VALUE = Shape(MessagesValue, {"messaging_product": TEXT_OR_NONE, "metadata": _METADATA, "contacts": [_CONTACT]})
"""A `messages` change's value without its messages and statuses: metadata and contacts, no value-level errors."""

TEXT_MESSAGE = Shape(Message, {"id": (str,), "from": TEXT_OR_NONE, "from_user_id": TEXT_OR_NONE,
                               "timestamp": TEXT_OR_NONE, "type": (str,), "text": Shape(Text, {"body": (str,)})})
"""A text message with no context, referral or errors (fits() alone does not check its type is "text")."""

_CONVERSATION = Shape(StatusConversation, {"id": TEXT_OR_NONE, "expiration_timestamp": TEXT_OR_NONE,
                                           "origin": (dict, NoneType)}, nullable=True)
_PRICING = Shape(Pricing, {"billable": (bool, NoneType), "pricing_model": TEXT_OR_NONE, "category": TEXT_OR_NONE,
                           "type": TEXT_OR_NONE}, nullable=True)

STATUS = Shape(Status, {"id": (str,), "status": (str,), "timestamp": TEXT_OR_NONE, "recipient_id": TEXT_OR_NONE,
                        "recipient_user_id": TEXT_OR_NONE, "conversation": _CONVERSATION, "pricing": _PRICING})
"""A status report without errors."""
