"""A client that sends for real with its data in a SQLite file (lost with a Heroku dyno's disk) is said out loud."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import DEMO, EMPRENDEMY, RunningApp

SANDBOX_ONLY = {"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key}


def warned(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "app.sqlite_with_live_clients"]


class TestLiveClientOnSQLite:
    def test_startup_logs_a_warning_naming_database_url(self, start_app: Any, caplog: pytest.LogCaptureFixture):
        app: RunningApp = start_app({**DEMO.env(), **SANDBOX_ONLY | {"EMPRENDEMY_PHONE_NUMBER_IDS": "2002"}})
        assert app.settings.database_url.startswith("sqlite:///")
        [record] = warned(caplog)
        assert record.levelno == logging.WARNING
        assert "DATABASE_URL" in record.detail
        assert record.clients == "demo"

    def test_health_shows_the_warning_without_naming_clients(self, start_app: Any):
        app: RunningApp = start_app({**DEMO.env(), **EMPRENDEMY.env()})
        response = app.http.get(app.url + "/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        [warning] = body["warnings"]
        assert "DATABASE_URL" in warning and "SQLite" in warning
        assert "demo" not in response.text and "emprendemy" not in response.text


class TestNothingToSay:
    def test_sandbox_clients_on_sqlite(self, start_app: Any, caplog: pytest.LogCaptureFixture):
        app: RunningApp = start_app(SANDBOX_ONLY)
        assert app.http.get(app.url + "/health").json() == {"status": "ok"}
        assert not warned(caplog)

    def test_live_clients_on_postgres(self, start_app: Any, postgres_url: str, caplog: pytest.LogCaptureFixture):
        app: RunningApp = start_app({**DEMO.env(), **EMPRENDEMY.env()}, database_url=postgres_url)
        assert app.http.get(app.url + "/health").json() == {"status": "ok"}
        assert not warned(caplog)
