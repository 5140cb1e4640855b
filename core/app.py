"""create_app(): the one FastAPI app serving the webhook and every client's API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from core.api.router import ClientApps, add_error_handlers
from core.api.sandbox import router as sandbox_router
from core.clients import discover, load_registry
from core.clock import Clock
from core.config import Settings, load_settings
from core.health import router as health_router
from core.logs import configure_logging
from core.services import run_services
from core.webhook.router import router as webhook_router

log = logging.getLogger("core.app")


def create_app(settings: Settings | None = None, *, env_file: Path | None = Path(".env"),
               clock: Clock | None = None) -> FastAPI:
    """Read configuration, discover clients and wire the app; bad configuration raises ConfigError here.

    `clock` is the time the service sees (the machine's by default; tests set another day)."""
    settings = settings or load_settings(_env_file=env_file)
    configure_logging(settings.log_level)
    registry = load_registry(discover(settings.clients_package), settings, env_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        # Sub-apps run no lifespan of their own: shared resources live here and reach them via request.state.
        async with run_services(settings, registry, clock) as services:
            log.info("app.started", extra={"clients": ",".join(c.name for c in registry) or "none"})
            yield {"services": services}

    # Off unless API_DOCS: unauthenticated pages that describe the deployment help no one but a prober.
    docs = {} if settings.api_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title="WhatsApp bot server", version="1", lifespan=lifespan, **docs)
    add_error_handlers(app)
    app.include_router(webhook_router)
    app.include_router(health_router)
    app.include_router(sandbox_router)
    ClientApps().mount_all(app, registry)
    return app
