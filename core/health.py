"""GET /health: the process is up and its store answers, and what its operator must fix; it names no client."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.services import ServicesDep
from core.storage.base import StoreUnavailable

log = logging.getLogger("core.health")

router = APIRouter()


@router.get("/health")
async def health(request: Request, services: ServicesDep) -> JSONResponse:
    try:
        await services.store.next_due_at()
    except StoreUnavailable as error:
        # The reason names hosts and tables: for the logs, not for whoever asks.
        log.warning("health.store_unavailable", extra={"detail": str(error)})
        return JSONResponse({"status": "unavailable"}, status_code=503)
    warnings: list[str] = request.state.warnings  # from the lifespan (core/app.py): they name no client
    return JSONResponse({"status": "ok", "warnings": warnings} if warnings else {"status": "ok"})
