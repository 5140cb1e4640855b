"""create_app(): the one FastAPI app serving the webhook and every client's API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import Receive, Scope, Send

from core.api.router import ClientApps, add_error_handlers
from core.api.sandbox import router as sandbox_router
from core.clients import ClientRegistry, discover, load_registry
from core.clock import Clock
from core.config import Settings, load_settings
from core.console.routes import add_console
from core.console.startup import say_how_to_log_in
from core.health import router as health_router
from core.heap import freeze_startup_objects
from core.logs import configure_logging
from core.operations import router as operations_router
from core.services import run_services
from core.webhook.router import add_routes as add_webhook_routes
from core.webhook.router import serve as serve_webhook

log = logging.getLogger("core.app")


@dataclass(frozen=True)
class DeploymentWarning:
    """Something about the deployment its operator must fix; `text` names no client (GET /health shows it)."""

    event: str
    text: str
    clients: str


def deployment_warnings(settings: Settings, registry: ClientRegistry) -> list[DeploymentWarning]:
    """What is wrong with this configuration without stopping it from running."""
    found = []
    live = [client.name for client in registry if client.send_mode == "live"]
    if live and settings.database_url.startswith("sqlite:"):
        found.append(DeploymentWarning(
            "app.sqlite_with_live_clients",
            "DATABASE_URL is a SQLite file while a client sends for real: on Heroku the file is lost with every "
            "restart (at least daily), and with it every conversation; set DATABASE_URL to PostgreSQL",
            ",".join(live)))
    return found


class BotApp(FastAPI):
    """The service's app. POST /webhook, by far its busiest request, goes straight to its handler: the middleware
    stack and the router are for the other routes (the same handler stays routed, for a path under a root_path)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/webhook" and scope["method"] == "POST":
            await serve_webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, env_file: Path | None = Path(".env"),
               clock: Clock | None = None, server: bool = False) -> FastAPI:
    """Read configuration, discover clients and wire the app; bad configuration raises ConfigError here.

    `clock` is the time the service sees (the machine's by default; tests set another day). `server`: this app is
    the process's one app (core.main), so its startup objects are frozen out of garbage collection once started."""
    settings = settings or load_settings(_env_file=env_file)
    configure_logging(settings.log_level, settings.log_format)
    registry = load_registry(discover(settings.clients_package), settings, env_file)
    warnings = deployment_warnings(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        for warning in warnings:
            log.warning(warning.event, extra={"detail": warning.text, "clients": warning.clients})
        # Sub-apps run no lifespan of their own: shared resources live here and reach them via request.state.
        async with run_services(settings, registry, clock) as services:
            log.info("app.started", extra={"clients": ",".join(c.name for c in registry) or "none"})
            await say_how_to_log_in(services.store, settings)
            if server:
                freeze_startup_objects()
            yield {"services": services, "warnings": [warning.text for warning in warnings]}

    # Off unless API_DOCS: unauthenticated pages that describe the deployment help no one but a prober.
    docs = {} if settings.api_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    # FastAPI's native OpenTelemetry off: nothing here configures a provider, and finding that out costs every
    # request three os.environ reads (~10 % of an acknowledgement's CPU outside the store). Metrics may turn it on.
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = BotApp(title="WhatsApp bot server", version="1", lifespan=lifespan, telemetry=telemetry, **docs)
    add_error_handlers(app)
    add_webhook_routes(app)
    app.include_router(health_router)
    app.include_router(operations_router)
    app.include_router(sandbox_router)
    add_console(app, settings, clock)
    ClientApps().mount_all(app, registry)
    return app
