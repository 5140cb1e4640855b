"""Nothing answered without a key tells which clients a deployment serves, or which of them have an API key."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.support import wait_for

CLIENT_NAMES = (DEMO.name, EMPRENDEMY.name)
DOCS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def get(app: RunningApp, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return app.http.get(app.url + path, headers=headers)


def names_no_client(response: httpx.Response) -> bool:
    return not any(name in response.text.lower() for name in CLIENT_NAMES)


class TestRootDocs:
    @pytest.mark.parametrize("path", DOCS)
    def test_off_by_default(self, live_app: RunningApp, path: str):
        assert live_app.settings.api_docs is False
        assert get(live_app, path).status_code == 404

    def test_on_with_api_docs_and_naming_no_client(self, start_app: Any):
        app = start_app({**DEMO.env(), **EMPRENDEMY.env()}, api_docs=True)
        for path in ("/docs", "/redoc"):
            assert get(app, path).status_code == 200
        schema = get(app, "/openapi.json")
        assert schema.status_code == 200
        assert "/webhook" in schema.json()["paths"]
        assert names_no_client(schema)

    def test_api_docs_is_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch):
        from core.config import load_settings

        assert load_settings(_env_file=None).api_docs is False
        monkeypatch.setenv("API_DOCS", "true")
        assert load_settings(_env_file=None).api_docs is True


class TestClientDocs:
    @pytest.mark.parametrize("api_docs", [False, True])
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    def test_pages_are_not_served_with_or_without_a_key(self, start_app: Any, path: str, api_docs: bool):
        # A browser cannot send the bearer key for the page or for the schema it loads: the pages stay off.
        app = start_app({**DEMO.env(), **EMPRENDEMY.env()}, api_docs=api_docs)
        for client in (DEMO, EMPRENDEMY):
            assert get(app, f"/api/v1/{client.name}{path}").status_code == 404
            assert get(app, f"/api/v1/{client.name}{path}", client.api_key).status_code == 404

    @pytest.mark.parametrize("key", [None, "not-the-key", EMPRENDEMY.api_key])
    def test_schema_needs_the_clients_key(self, live_app: RunningApp, key: str | None):
        response = get(live_app, "/api/v1/demo/openapi.json", key)
        assert response.status_code == 401
        assert response.json() == get(live_app, "/api/v1/demo/conversations", key).json()
        assert names_no_client(response)

    def test_schema_with_the_key_describes_the_clients_api(self, live_app: RunningApp):
        demo = get(live_app, "/api/v1/demo/openapi.json", DEMO.api_key)
        assert demo.status_code == 200
        assert "/conversations/{conversation_id}/messages" in demo.json()["paths"]
        assert demo.json()["servers"] == [{"url": "/api/v1/demo"}]
        emprendemy = get(live_app, "/api/v1/emprendemy/openapi.json", EMPRENDEMY.api_key).json()
        assert "/leads" in emprendemy["paths"]
        assert "/leads" not in demo.json()["paths"]


class TestRootHealth:
    def test_names_no_client(self, live_app: RunningApp):
        response = get(live_app, "/health")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert "clients" not in response.json()
        assert names_no_client(response)

    def test_store_down_is_503_with_the_status_only(self, start_app: Any, tmp_db: str,
                                                    caplog: pytest.LogCaptureFixture):
        app = start_app(DEMO.env(), run_scheduler=False)
        assert get(app, "/health").status_code == 200
        with sqlite3.connect(Path(tmp_db.removeprefix("sqlite:///"))) as db:
            db.execute("ALTER TABLE conversations RENAME TO conversations_elsewhere")
        response = get(app, "/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}
        [logged] = wait_for(lambda: [r for r in caplog.records if r.getMessage() == "health.store_unavailable"],
                            what="the reason to be logged")
        assert "conversations" in logged.detail


# The same requests to a client whose API has a key and to one whose API has none.
HEADERS = [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer some-key"},
           {"Authorization": f"Bearer {DEMO.api_key}"}]


class TestRefusals:
    @pytest.fixture
    def app(self, start_app: Any) -> RunningApp:
        """demo has an API key, emprendemy none."""
        return start_app({**DEMO.env(), "EMPRENDEMY_PHONE_NUMBER_IDS": EMPRENDEMY.phone_number_id})

    @pytest.mark.parametrize("headers", HEADERS)
    @pytest.mark.parametrize("path", ["/health", "/conversations", "/conversations/1/messages", "/openapi.json"])
    def test_a_disabled_api_answers_as_an_enabled_one_does(self, app: RunningApp, path: str,
                                                           headers: dict[str, str]):
        if headers.get("Authorization") == f"Bearer {DEMO.api_key}":
            headers = {"Authorization": "Bearer wrong-for-demo"}
        enabled = app.http.get(f"{app.url}/api/v1/demo{path}", headers=headers)
        disabled = app.http.get(f"{app.url}/api/v1/emprendemy{path}", headers=headers)
        assert (enabled.status_code, disabled.status_code) == (401, 401)
        assert disabled.json() == enabled.json()
        assert disabled.headers["www-authenticate"] == enabled.headers["www-authenticate"] == "Bearer"
        assert "API_KEY" not in disabled.text and "disabled" not in disabled.text

    def test_a_disabled_api_is_logged_with_the_client_and_variable(self, app: RunningApp,
                                                                    caplog: pytest.LogCaptureFixture):
        with caplog.at_level(logging.INFO):
            get(app, "/api/v1/emprendemy/conversations", "some-key")
        [refused] = [r for r in caplog.records if r.getMessage() == "api.unauthorized"]
        assert refused.levelno == logging.WARNING
        assert refused.client == "emprendemy"
        assert "EMPRENDEMY_API_KEY" in refused.reason

    def test_a_wrong_key_is_logged_with_the_client_and_no_key(self, app: RunningApp,
                                                               caplog: pytest.LogCaptureFixture):
        with caplog.at_level(logging.INFO):
            get(app, "/api/v1/demo/conversations", "guessed-key-123")
        [refused] = [r for r in caplog.records if r.getMessage() == "api.unauthorized"]
        assert refused.client == "demo"
        assert refused.reason == "wrong key"
        assert "guessed-key-123" not in str(vars(refused))
