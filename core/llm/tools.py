"""Tools the model may call: plain typed Python functions, their JSON schema derived from the signature."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, get_type_hints

from pydantic import BaseModel, ValidationError, create_model

if TYPE_CHECKING:
    from core.knowledge.base import Passage

CONTEXT_PARAMETER = "ctx"


class Toolbox(Protocol):
    """What tools may use of the running service (knowledge, staff email, the client's data)."""

    async def search_knowledge(self, client: str, query: str) -> list[Passage]: ...

    def notify_staff(self, client: str, settings: Any, subject: str, body: str, reply_to: str | None = None) -> bool: ...

    async def get_document(self, client: str, key: str) -> Any | None: ...

    async def put_document(self, client: str, key: str, data: Any) -> None: ...

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None) -> int: ...


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know and use in the turn it runs in; passed as the keyword-only `ctx` argument."""

    client: str
    conversation_id: int
    user_key: str
    settings: Any  # the client's own settings object (a ClientSettings subclass)
    now: datetime
    contact_name: str | None = None
    toolbox: Toolbox | None = None
    handovers: list[str] = field(default_factory=list)

    def hand_over(self, reason: str) -> None:
        """Ask for a person: after this turn's reply is sent, the conversation goes to `human` mode and staff hear."""
        self.handovers.append(reason)

    def _tools(self) -> Toolbox:
        if self.toolbox is None:
            raise ToolError("this service is not available in this context")
        return self.toolbox

    async def search_knowledge(self, query: str) -> list[Passage]:
        return await self._tools().search_knowledge(self.client, query)

    def notify_staff(self, subject: str, body: str, reply_to: str | None = None) -> bool:
        """Email the client's staff (its SMTP_TO), optionally with a Reply-To; False when no SMTP is configured."""
        return self._tools().notify_staff(self.client, self.settings, subject, body, reply_to)

    async def get_document(self, key: str) -> Any | None:
        return await self._tools().get_document(self.client, key)

    async def put_document(self, key: str, data: Any) -> None:
        await self._tools().put_document(self.client, key, data)

    async def add_record(self, kind: str, data: dict[str, Any]) -> int:
        return await self._tools().add_record(self.client, kind, data, self.conversation_id)


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
        except ToolError as error:
            return f"Error: {error}"
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


class ToolSet:
    """The tools of one client, by name."""

    def __init__(self, functions: Sequence[Callable[..., Any]]) -> None:
        self._tools = {tool.name: tool for tool in map(Tool.from_function, functions)}
        if len(self._tools) != len(functions):
            raise TypeError("two tools share a name")

    def __bool__(self) -> bool:
        return bool(self._tools)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [tool.openai_schema() for tool in self._tools.values()]
