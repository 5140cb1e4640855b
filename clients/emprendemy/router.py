"""Emprendemy's own endpoints, mounted at /api/v1/emprendemy behind its API key: the course catalogue and leads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError

from clients.emprendemy.catalogue import DOCUMENT, Catalogue, Course, duplicates
from core.api.router import Limit, Offset
from core.errors import NotFound
from core.services import ServicesDep

CLIENT = "emprendemy"

router = APIRouter(tags=["emprendemy"])


@router.get("/courses")
async def get_courses(services: ServicesDep) -> Catalogue:
    """The course catalogue the bot answers from."""
    data = await services.store.get_document(CLIENT, DOCUMENT)
    if data is None:
        raise NotFound("no course catalogue is stored")
    return Catalogue.model_validate(data)


@router.put("/courses")
async def put_courses(services: ServicesDep, courses: Annotated[list[Course], Body(min_length=1)]) -> Catalogue:
    """Replace the whole catalogue (a JSON array of courses); the bot answers from it from its next tool call.

    422 lists what is wrong, each at its place (`["body", <index>, <field>]`): a missing or invalid field, a price
    that is not positive, a URL or date that is not one, a repeated id or name."""
    problems = duplicates(courses)
    if problems:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", index, field), "msg": message,
                                       "input": getattr(courses[index], field)} for index, field, message in problems])
    catalogue = Catalogue(courses)
    await services.store.put_document(CLIENT, DOCUMENT, catalogue.model_dump(mode="json"), services.clock.now())
    return catalogue


@router.get("/leads")
async def get_leads(services: ServicesDep, limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    """Leads the bot registered, oldest first: each with its id, conversation, time and data."""
    return await services.store.list_records(CLIENT, "lead", limit, offset)
