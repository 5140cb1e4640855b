"""GET /health: the process is up and its store answers; it names no client (it needs no key)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from core.services import ServicesDep
from core.storage.base import StoreUnavailable

log = logging.getLogger("core.health")

router = APIRouter()


@router.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    try:
        await services.store.next_due_at()
    except StoreUnavailable as error:
        # The reason names hosts and tables: for the logs, not for whoever asks.
        log.warning("health.store_unavailable", extra={"detail": str(error)})
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
