"""GET /ready: 200 when the store answers, the scheduler runs and the migrations are all applied; else 503 naming
the failing checks, with no host or credential in the answer. /health stays liveness."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from core.storage.migrate import migrations
from tests.conftest import DEMO
from tests.postgres import run_async


def test_ready_when_store_scheduler_and_schema_are(start_app: Any):
    app = start_app(DEMO.env())
    response = httpx.get(app.url + "/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"store": "ok", "scheduler": "ok", "migrations": "ok"}}


def test_without_a_scheduler_there_is_nothing_to_check_there(start_app: Any):
    app = start_app(DEMO.env(), run_scheduler=False)
    response = httpx.get(app.url + "/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["scheduler"].startswith("skipped: RUN_SCHEDULER=false")


def test_a_store_that_does_not_answer_is_503_naming_the_check(start_app: Any, tmp_db: str):
    app = start_app(DEMO.env())
    with sqlite3.connect(Path(tmp_db.removeprefix("sqlite:///"))) as db:
        db.execute("ALTER TABLE conversations RENAME TO conversations_elsewhere")
    response = httpx.get(app.url + "/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["store", "migrations"]
    assert response.json()["checks"]["store"] == "unreachable"
    assert httpx.get(app.url + "/health").status_code == 503  # (liveness says the same: its store check is older)


def test_a_migration_not_applied_on_postgres_is_503_naming_the_file(start_app: Any, postgres_url: str):
    app = start_app(DEMO.env(), database_url=postgres_url)
    assert httpx.get(app.url + "/ready").status_code == 200
    latest = migrations()[-1]

    async def forget() -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("DELETE FROM supabase_migrations.schema_migrations WHERE version = $1", latest.version)
        finally:
            await conn.close()

    run_async(forget())
    response = httpx.get(app.url + "/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert latest.path.name in body["checks"]["migrations"]
    assert "127.0.0.1" not in response.text and "postgres" not in response.text.lower()
    assert httpx.get(app.url + "/health").status_code == 200  # alive all the same
