"""What `python -m core chat` reads back: a sandbox client's chat number and the conversation on it.

Behind the sandbox secret (`Authorization: Bearer <SANDBOX_SECRET>`), and only for clients in sandbox mode: it shows
what the bot recorded instead of sending, never a live client's conversations."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from core.api.schemas import ConversationRead, MessageRead
from core.clients import Client
from core.errors import NotFound, Unauthorized
from core.sandbox import sandbox_number
from core.services import Services, ServicesDep

PAGE = 500

router = APIRouter(prefix="/sandbox", include_in_schema=False)


class SandboxClient(BaseModel):
    client: str
    phone_number_id: str
    llm: str


class SandboxConversation(BaseModel):
    conversation: ConversationRead | None
    messages: list[MessageRead]


async def require_sandbox_secret(request: Request, services: ServicesDep) -> Services:
    expected = services.sandbox_secret
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        raise NotFound("no client is in sandbox mode")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("missing or wrong Authorization: Bearer <sandbox secret> (SANDBOX_SECRET or "
                           "data/sandbox_secret of the server)")
    return services


SandboxServices = Annotated[Services, Depends(require_sandbox_secret)]


def _sandbox_client(services: Services, name: str) -> Client:
    client = services.registry.get(name)
    if client is None:
        known = ", ".join(c.name for c in services.registry if c.send_mode == "sandbox") or "none"
        raise NotFound(f"no client {name!r}; clients in sandbox mode: {known}")
    if client.send_mode != "sandbox":
        raise NotFound(f"client {name} sends for real (it has {client.env_prefix}ACCESS_TOKEN): the chat only talks "
                       "to clients in sandbox mode")
    return client


@router.get("/{client_name}")
async def sandbox_client(client_name: str, services: SandboxServices) -> SandboxClient:
    """The number a chat writes to, and whether a model or the offline responder answers."""
    client = _sandbox_client(services, client_name)
    return SandboxClient(client=client.name, phone_number_id=sandbox_number(client.name),
                         llm="openai" if services.settings.openai_api_key else "offline")


@router.get("/{client_name}/conversations/{user_key}")
async def sandbox_conversation(client_name: str, user_key: str, services: SandboxServices,
                               after: Annotated[int, Query(ge=0, le=2**62)] = 0) -> SandboxConversation:
    """The person's conversation on the sandbox number, and its messages with an id above `after`, in order."""
    client = _sandbox_client(services, client_name)
    conversation = await services.store.find_conversation(client.name, sandbox_number(client.name), user_key)
    if conversation is None:
        return SandboxConversation(conversation=None, messages=[])
    found, offset = [], 0
    while True:
        page = await services.store.list_messages(conversation.id, PAGE, offset)
        found += [message for message in page if message.id > after]
        if len(page) < PAGE:
            break
        offset += PAGE
    return SandboxConversation(conversation=ConversationRead.model_validate(conversation, from_attributes=True),
                               messages=[MessageRead.model_validate(m, from_attributes=True) for m in found])
