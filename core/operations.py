"""GET /metrics (Prometheus, behind METRICS_TOKEN when set) and GET /ready (can this process do its work?).

/health stays liveness: the process answers. /ready says whether it should get work: its store answers, its
scheduler runs (when RUN_SCHEDULER is on), and on PostgreSQL every file of supabase/migrations is applied."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from core.services import Services, ServicesDep
from core.storage.base import StoreUnavailable
from core.storage.migrate import migrations

log = logging.getLogger("core.operations")

router = APIRouter()


def _authorized(request: Request, token: str) -> bool:
    """The Authorization header is `Bearer <token>`, compared in constant time."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_token
    if token is not None and not _authorized(request, token.get_secret_value()):
        return JSONResponse({"detail": "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    if services.metrics is None:
        return JSONResponse({"detail": "metrics are not collected in this process"}, status_code=404)
    now = services.clock.now()
    try:
        backlog = await services.store.backlog(now)
    except StoreUnavailable as error:
        # The counters still tell what happened; the store's gauges are left out rather than reported as zero.
        log.warning("metrics.store_unavailable", extra={"detail": str(error)})
        backlog = None
    body = services.metrics.exposition(backlog, (client.name for client in services.registry), now)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """200 with each check's state, or 503 naming the failing checks; nothing about hosts or credentials."""
    checks: dict[str, str] = {}
    store_ok = True
    try:
        await services.store.next_due_at()
        checks["store"] = "ok"
    except StoreUnavailable as error:
        log.warning("ready.store_unavailable", extra={"detail": str(error)})
        checks["store"] = "unreachable"
        store_ok = False
    if not services.settings.run_scheduler:
        # Nothing to check here: a separate `worker` process answers, and this process cannot see it.
        checks["scheduler"] = "skipped: RUN_SCHEDULER=false (a worker process answers)"
    else:
        checks["scheduler"] = "ok" if services.scheduler.alive else "not running"
    checks["migrations"] = await _migrations(services) if store_ok else "unknown: the store is unreachable"
    failing = [name for name, state in checks.items() if state != "ok" and not state.startswith("skipped")]
    body = {"status": "not ready" if failing else "ready", "checks": checks}
    if failing:
        return JSONResponse({**body, "failing": failing}, status_code=503)
    return JSONResponse(body)


async def _migrations(services: Services) -> str:
    if not services.settings.database_url.startswith(("postgresql://", "postgres://")):
        return "ok"  # SQLite: the store creates and completes its schema when it opens
    try:
        applied = await services.store.applied_migrations()
    except StoreUnavailable as error:
        log.warning("ready.store_unavailable", extra={"detail": str(error)})
        return "unknown: the store is unreachable"
    missing = [migration.path.name for migration in migrations() if migration.version not in applied]
    if missing:
        log.warning("ready.migrations_missing", extra={"missing": ",".join(missing)})
        return f"{len(missing)} not applied: {', '.join(missing)} (run python -m core migrate)"
    return "ok"
