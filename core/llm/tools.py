"""Tools the model may call: plain typed Python functions, their JSON schema derived from the signature."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from core.storage.records import Intent, NewMessage
from core.whatsapp.rich import RichKind, RichMessage, rich_message

if TYPE_CHECKING:
    from core.knowledge.base import Passage

log = logging.getLogger("core.llm.tools")

CONTEXT_PARAMETER = "ctx"
# Rich messages (buttons, lists, media, locations) tools may send in one turn: each is a message to the person,
# and Meta's pair rate is about one message every 6 s (WHATSAPP.md §9).
MAX_RICH_PER_TURN = 3
_RICH = TypeAdapter(RichMessage)


class Toolbox(Protocol):
    """What tools may read of the running service (knowledge, the client's documents)."""

    async def search_knowledge(self, client: str, query: str) -> list[Passage]: ...

    async def get_document(self, client: str, key: str) -> Any | None: ...

    async def put_document(self, client: str, key: str, data: Any) -> None: ...

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        """The conversation's records of `kind` added since `since`, each with its ref and data."""
        ...


@dataclass
class ToolContext:
    """What a tool may know and use in the turn it runs in; passed as the keyword-only `ctx` argument.

    What a tool does to the world (a record, a staff email, a hand-over) is an intent: it is stored with the turn's
    reply, in one transaction, and carried out once, so a retried or crashed turn never repeats it."""

    client: str
    conversation_id: int
    user_key: str
    settings: Any  # the client's own settings object (a ClientSettings subclass)
    now: datetime
    contact_name: str | None = None
    toolbox: Toolbox | None = None
    batch_id: str = ""
    intents: list[Intent] = field(default_factory=list)
    call_id: str = "call"  # the tool call being run (the agent sets it): intents are keyed by it
    records_per_day: int = 3  # records of one kind this conversation may add in 24 hours (MAX_RECORDS_PER_...)
    # Rich messages the tools sent, with the tool call that sent each: they go out with the turn's reply.
    rich: list[tuple[str, NewMessage]] = field(default_factory=list)
    _made: int = 0

    def begin_call(self, call_id: str) -> None:
        """The agent is about to run the model's tool call `call_id`."""
        self.call_id, self._made = call_id, 0

    @property
    def handovers(self) -> list[str]:
        return [intent.data["reason"] for intent in self.intents if intent.kind == "handover"]

    def hand_over(self, reason: str) -> None:
        """Ask for a person: with this turn's reply the conversation goes to `human` mode, and staff hear of it."""
        self.intents.append(Intent("handover", self._key(), {"reason": reason}))

    def notify_staff(self, subject: str, body: str, reply_to: str | None = None) -> bool:
        """Email the client's staff (its SMTP_TO), optionally with a Reply-To, once this turn is stored.

        False when the client has no SMTP configured (logged)."""
        smtp_config = getattr(self.settings, "smtp_config", None)
        if smtp_config is None or smtp_config() is None:
            log.warning("notify.no_smtp", extra={"client": self.client, "conversation": self.conversation_id,
                                                 "subject": subject, "detail": f"set {self.client.upper()}_SMTP_HOST "
                                                                               "and _SMTP_TO to email staff"})
            return False
        self.intents.append(Intent("email", self._key(), {"subject": subject, "body": body, "reply_to": reply_to}))
        return True

    async def add_record(self, kind: str, data: dict[str, Any]) -> RecordRef:
        """Keep a record of `kind` (e.g. a lead) with this turn; returns its reference to tell the user (L-3F9A2C).

        The same data again in this conversation gives the reference it already has (`.new` is False: do not
        notify anyone again); more than `records_per_day` of a kind in 24 hours raises ToolError."""
        recent = await self._tools().recent_records(self.client, kind, self.conversation_id, self.now - timedelta(days=1))
        recent += [{"ref": i.data["ref"], "data": i.data["data"]} for i in self.intents
                   if i.kind == "record" and i.data["kind"] == kind]
        same = next((record for record in recent if record["data"] == data), None)
        if same is not None:
            return RecordRef(same["ref"], new=False)
        if len(recent) >= self.records_per_day:
            log.warning("turn.limit_hit", extra={"client": self.client, "conversation": self.conversation_id,
                                                 "limit": f"{kind} records per conversation per day: "
                                                          f"{self.records_per_day}"})
            raise ToolError(f"this conversation already registered {len(recent)} {kind} records in the last 24 hours, "
                            "the most allowed: nothing was registered. A person from the team can help with more.")
        key = self._key()
        ref = f"{kind[:1].upper()}-{hashlib.sha256(f'{self.batch_id}/{key}'.encode()).hexdigest()[:6].upper()}"
        self.intents.append(Intent("record", key, {"kind": kind, "data": data, "ref": ref}))
        return RecordRef(ref)

    def reply_rich(self, message: RichKind | dict[str, Any]) -> str:
        """Send the person buttons, a list, an image, a document or a location with this turn's reply (before it).

        `message` is a model of core.whatsapp.rich or its JSON shape (`{"type": "buttons", …}`); returns what to
        tell the model (it was sent, as this text). ToolError when it does not fit Meta's limits or the turn has
        sent MAX_RICH_PER_TURN already."""
        if isinstance(message, dict):
            try:
                message = _RICH.validate_python(message)
            except ValidationError as error:
                raise ToolError(f"the message was not sent: {_fields(error)}") from None
        outgoing = rich_message(message, "assistant")
        if any(sent.payload == outgoing.payload for _, sent in self.rich):
            return f"This {message.type} message was already sent to the user in this turn; do not send it again."
        if len(self.rich) >= MAX_RICH_PER_TURN:
            log.warning("turn.limit_hit", extra={"client": self.client, "conversation": self.conversation_id,
                                                 "limit": f"rich messages per turn: {MAX_RICH_PER_TURN}"})
            raise ToolError(f"this turn already sent {MAX_RICH_PER_TURN} rich messages, the most allowed: "
                            "answer in words.")
        self.rich.append((self.call_id, outgoing))
        return (f"Sent to the user as a WhatsApp {message.type} message, shown before your answer; they see:\n"
                f"{outgoing.text}")

    def _key(self) -> str:
        self._made += 1
        return f"{self.call_id}:{self._made}"

    def _tools(self) -> Toolbox:
        if self.toolbox is None:
            raise ToolError("this service is not available in this context")
        return self.toolbox

    async def search_knowledge(self, query: str) -> list[Passage]:
        return await self._tools().search_knowledge(self.client, query)

    async def get_document(self, key: str) -> Any | None:
        return await self._tools().get_document(self.client, key)

    async def put_document(self, key: str, data: Any) -> None:
        await self._tools().put_document(self.client, key, data)


class RecordRef(str):
    """A record's reference; `new` is False when the same record was already there."""

    new: bool

    def __new__(cls, ref: str, *, new: bool = True) -> RecordRef:
        made = super().__new__(cls, ref)
        made.new = new
        return made


class ToolError(Exception):
    """Raised by a tool to tell the model, in words, why it could not do what was asked."""


@dataclass(frozen=True)
class Tool:
    """One callable tool with the schema the model sees."""

    name: str
    description: str
    arguments: type[BaseModel]
    function: Callable[..., Any]
    wants_context: bool

    @classmethod
    def from_function(cls, function: Callable[..., Any]) -> Tool:
        """Build a tool from a typed function; its docstring is the description the model reads."""
        signature = inspect.signature(function)
        hints = get_type_hints(function)
        fields: dict[str, Any] = {}
        for name, parameter in signature.parameters.items():
            if name == CONTEXT_PARAMETER:
                continue
            if name not in hints:
                raise TypeError(f"tool {function.__name__}: parameter {name!r} needs a type annotation")
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[name] = (hints[name], default)
        description = inspect.getdoc(function)
        if not description:
            raise TypeError(f"tool {function.__name__}: a docstring is required (it is the tool's description)")
        model = create_model(f"{function.__name__}_arguments", **fields)
        return cls(
            name=function.__name__,
            description=description,
            arguments=model,
            function=function,
            wants_context=CONTEXT_PARAMETER in signature.parameters,
        )

    def openai_schema(self) -> dict[str, Any]:
        """The tool in the Chat Completions `tools` format."""
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    async def call(self, raw_arguments: str, context: ToolContext) -> str:
        """Run the tool on the model's JSON arguments; bad arguments come back as text for the model."""
        try:
            arguments = self.arguments.model_validate_json(raw_arguments or "{}")
        except ValidationError as error:
            return f"Error: invalid arguments for {self.name}: {error.errors(include_url=False)}"
        kwargs = arguments.model_dump()
        if self.wants_context:
            kwargs[CONTEXT_PARAMETER] = context
        try:
            result = self.function(**kwargs)
            if isinstance(result, Awaitable):
                result = await result
            if isinstance(result, RichKind):
                result = context.reply_rich(result)  # a tool may return its rich message: it is sent the same way
        except ToolError as error:
            return f"Error: {error}"
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


def _fields(error: ValidationError) -> str:
    """A validation error as the model can act on it: each field's path and what is wrong."""
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'message'}: {item['msg']}"
                     for item in error.errors(include_url=False))


class ToolSet:
    """The tools of one client, by name."""

    def __init__(self, functions: Sequence[Callable[..., Any]]) -> None:
        self._tools = {tool.name: tool for tool in map(Tool.from_function, functions)}
        if len(self._tools) != len(functions):
            raise TypeError("two tools share a name")
        # Built once: deriving a JSON schema from a pydantic model costs about 0.1 ms a tool, on every model call.
        self._schemas = [tool.openai_schema() for tool in self._tools.values()]

    def __bool__(self) -> bool:
        return bool(self._tools)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def openai_schemas(self) -> list[dict[str, Any]]:
        """The tools in the Chat Completions `tools` format; one list shared by every turn (read it, never change it)."""
        return self._schemas
