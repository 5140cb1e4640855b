"""`python -m core worker`: the scheduler alone, for deployments that scale answering apart from the web dynos."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from core.clients import discover, load_registry
from core.config import load_settings
from core.heap import freeze_startup_objects
from core.logs import configure_logging
from core.services import run_services

log = logging.getLogger("core.worker")


async def run_worker() -> None:
    """Run the services with the scheduler until SIGTERM or SIGINT, then stop cleanly (leases released)."""
    settings = load_settings(run_scheduler=True)
    configure_logging(settings.log_level, settings.log_format)
    registry = load_registry(discover(settings.clients_package), settings, Path(".env"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with run_services(settings, registry):
        log.info("worker.started", extra={"clients": ",".join(c.name for c in registry) or "none"})
        freeze_startup_objects()
        await stop.wait()
        log.info("worker.stopping")
