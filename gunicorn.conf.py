"""gunicorn's settings file (read from the working directory): prometheus-client's multiprocess folder.

With PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics to files in that folder and GET /metrics adds them
up. The folder must start empty (files left by an earlier run would be added in), so the master empties it before
the first worker starts; a worker that exits is marked dead (its live gauges are dropped; its counters stay counted,
as counters must). Without the variable these hooks do nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def on_starting(server: Any) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
