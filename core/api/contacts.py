"""REST for a client's contacts: the list (tag, search, pages), one contact's edit, and the CSV export."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.api.schemas import _UNSTORABLE
from core.clients import Client
from core.errors import NotFound
from core.services import ServicesDep
from core.storage.broadcast_records import Contact, ContactChange, ContactQuery

log = logging.getLogger("core.api")

UserKey = Annotated[str, Path(min_length=1, max_length=256)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
# Enough of an address to be one: something@domain.tld, no spaces (delivery is the proof).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("user_key", "wa_id", "name", "profile_name", "email", "tags", "notes", "opted_out", "opted_out_at",
               "first_seen", "last_inbound_at")
EXPORT_PAGE = 500


class ContactRead(BaseModel):
    user_key: str
    wa_id: str | None
    name: str | None = Field(description="staff's name for the person, else the WhatsApp profile name")
    profile_name: str | None
    email: str | None
    tags: list[str]
    notes: str | None
    opted_out: bool
    opted_out_at: datetime | None
    first_seen: datetime | None
    last_inbound_at: datetime | None


class ContactPatch(BaseModel):
    """The fields to change; those not given stay as they are (null clears name, email or notes)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)
    opted_out: bool | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value.strip()):
            raise ValueError("not an email address (name@example.com)")
        return value.strip() if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = [tag.strip().lower() for tag in value]
        if any(not tag or any(ord(char) < 32 for char in tag) for tag in tags):
            raise ValueError("a tag cannot be blank or hold control characters")
        return tags

    @field_validator("name", "email", "notes")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and _UNSTORABLE.search(value):
            raise ValueError("NUL characters and lone surrogates cannot be stored")
        return value


def contact_change(body: ContactPatch) -> ContactChange:
    """The store's change for a checked patch: only the fields given (an `opted_out` of null changes nothing)."""
    given = body.model_fields_set
    if "opted_out" in given and body.opted_out is None:
        given = given - {"opted_out"}
    return ContactChange(fields=frozenset(given), name=body.name, email=body.email, notes=body.notes,
                         tags=body.tags or [], opted_out=bool(body.opted_out))


def contact_read(contact: Contact) -> ContactRead:
    return ContactRead(user_key=contact.user_key, wa_id=contact.wa_id, name=contact.display_name,
                       profile_name=contact.profile_name, email=contact.email, tags=contact.tags, notes=contact.notes,
                       opted_out=contact.opted_out, opted_out_at=contact.opted_out_at, first_seen=contact.first_seen,
                       last_inbound_at=contact.last_inbound_at)


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def build_contacts_router(client: Client) -> APIRouter:
    """Contacts endpoints of one client (mounted behind its API key with the shared ones)."""
    router = APIRouter()

    @router.get("/contacts")
    async def contacts(services: ServicesDep, limit: Limit = 50, offset: Offset = 0,
                       tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
                       q: Annotated[str | None, Query(min_length=1, max_length=200, description=(
                           "in the name, profile name, user key or email, any case"))] = None) -> list[ContactRead]:
        """The people who wrote to the client, the most recent first; by tag, or by a text search."""
        found = await services.store.list_contacts(client.name, ContactQuery(tag=tag, text=q), limit, offset)
        return [contact_read(item) for item in found]

    @router.get("/contacts.csv")
    async def contacts_csv(services: ServicesDep,
                           tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
                           q: Annotated[str | None, Query(min_length=1, max_length=200)] = None) -> StreamingResponse:
        """Every contact (or those of a tag or search) as CSV, read page by page as it is sent."""
        query = ContactQuery(tag=tag, text=q)

        async def rows() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            offset = 0
            while True:
                page = await services.store.list_contacts(client.name, query, EXPORT_PAGE, offset)
                for item in page:
                    read = contact_read(item)
                    values = {**read.model_dump(), "tags": ";".join(read.tags)}
                    writer.writerow([safe_cell(values[column]) for column in CSV_COLUMNS])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if len(page) < EXPORT_PAGE:
                    return
                offset += EXPORT_PAGE

        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{client.name}-contacts.csv"'})

    @router.patch("/contacts/{user_key}")
    async def edit_contact(services: ServicesDep, user_key: UserKey, body: ContactPatch) -> ContactRead:
        """Change a contact's name, email, tags (replaced), notes or opt-out; 404 when they never wrote."""
        given = body.model_fields_set
        updated = await services.store.update_contact(client.name, user_key, contact_change(body),
                                                      services.clock.now())
        if updated is None:
            raise NotFound(f"no contact {user_key} for client {client.name}")
        log.info("contacts.edited", extra={"client": client.name, "fields": ",".join(sorted(given))})
        return contact_read(updated)

    return router
