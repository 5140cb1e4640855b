"""GET /health: the process is up and its store answers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from core.services import ServicesDep
from core.storage.base import StoreUnavailable

router = APIRouter()


@router.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    try:
        await services.store.next_due_at()
    except StoreUnavailable as error:
        return JSONResponse({"status": "unavailable", "detail": str(error)}, status_code=503)
    return JSONResponse({"status": "ok", "clients": [client.name for client in services.registry]})
