"""/api/v1/<name>/…: only the client's own bearer key gets in, and only to that client's conversations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.support import text_delivery, wait_for

PATHS = ["/health", "/conversations", "/conversations/1/messages"]


def get(app: RunningApp, client_name: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return app.http.get(f"{app.url}/api/v1/{client_name}{path}", headers=headers or {})


def demo_conversation(app: RunningApp, graph: FakeGraph, wa_id: str = "5491155550001") -> int:
    """Create a demo conversation through the webhook and wait until it is answered; its id."""
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, wa_id, "hola")
    assert app.post_webhook(delivery, DEMO.secret).json()["stored"] == 1
    wait_for(lambda: [c for c in graph.texts() if c.body["to"] == wa_id], what="demo's reply")
    conversation_id = [c for c in app.api(DEMO, "/conversations").json() if c["user_key"] == wa_id][0]["id"]

    def answered() -> bool:
        messages = app.api(DEMO, f"/conversations/{conversation_id}/messages").json()
        return any(m["direction"] == "out" for m in messages) and all(m["processed_at"] for m in messages)

    wait_for(answered, what="demo's reply to be recorded")
    return conversation_id


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


class TestAuthentication:
    @pytest.mark.parametrize("path", PATHS)
    def test_no_authorization_is_401(self, live_app: RunningApp, path: str):
        response = get(live_app, "demo", path)
        assert_401(response)
        assert "Authorization" in response.json()["detail"]

    @pytest.mark.parametrize("path", PATHS)
    def test_wrong_key_is_401(self, live_app: RunningApp, path: str):
        response = get(live_app, "demo", path, {"Authorization": "Bearer not-the-key"})
        assert_401(response)
        assert "wrong API key" in response.json()["detail"]

    @pytest.mark.parametrize("path", PATHS)
    def test_other_clients_key_is_401(self, live_app: RunningApp, path: str):
        assert_401(get(live_app, "demo", path, {"Authorization": f"Bearer {EMPRENDEMY.api_key}"}))
        assert_401(get(live_app, "emprendemy", path, {"Authorization": f"Bearer {DEMO.api_key}"}))

    @pytest.mark.parametrize("header", [DEMO.api_key, f"Basic {DEMO.api_key}", f"Token {DEMO.api_key}", "Bearer",
                                        f"Bearer {DEMO.api_key}x", f"Bearer {DEMO.api_key[:-1]}"])
    def test_malformed_authorization_is_401(self, live_app: RunningApp, header: str):
        assert_401(get(live_app, "demo", "/health", {"Authorization": header}))

    def test_own_key_is_accepted_with_any_scheme_case(self, live_app: RunningApp):
        for scheme in ("Bearer", "bearer", "BEARER"):
            response = get(live_app, "demo", "/health", {"Authorization": f"{scheme} {DEMO.api_key}"})
            assert response.status_code == 200

    @pytest.mark.parametrize("path", PATHS)
    def test_client_without_api_key_is_401_naming_the_variable_in_the_log(self, start_app: Any, path: str,
                                                                           caplog: pytest.LogCaptureFixture):
        # The answer is a wrong key's (tests/test_api_privacy.py); only the log says the variable is unset.
        app = start_app({"DEMO_API_KEY": DEMO.api_key, "EMPRENDEMY_PHONE_NUMBER_IDS": EMPRENDEMY.phone_number_id})
        for headers in ({}, {"Authorization": f"Bearer {DEMO.api_key}"}, {"Authorization": "Bearer"}):
            response = get(app, "emprendemy", path, headers)
            assert_401(response)
            assert "EMPRENDEMY_API_KEY" not in response.json()["detail"]
        reasons = [r.reason for r in caplog.records if r.getMessage() == "api.unauthorized"]
        assert len(reasons) == 3 and all("EMPRENDEMY_API_KEY" in reason for reason in reasons)
        assert get(app, "demo", "/health", {"Authorization": f"Bearer {DEMO.api_key}"}).status_code == 200

    def test_blank_api_key_in_env_keeps_the_api_closed(self, start_app: Any, caplog: pytest.LogCaptureFixture):
        app = start_app({"DEMO_API_KEY": ""})
        for header in ("Bearer", "Bearer x"):
            assert_401(get(app, "demo", "/health", {"Authorization": header}))
        assert [r.client for r in caplog.records if r.getMessage() == "api.unauthorized"] == ["demo", "demo"]
        assert all("DEMO_API_KEY" in r.reason for r in caplog.records if r.getMessage() == "api.unauthorized")

    def test_auth_is_checked_before_query_validation(self, live_app: RunningApp):
        assert_401(get(live_app, "demo", "/conversations?limit=0"))
        assert_401(get(live_app, "demo", "/conversations/not-a-number/messages"))


class TestClientHealth:
    def test_health_reports_modes_and_numbers(self, live_app: RunningApp):
        response = live_app.api(DEMO, "/health")
        assert response.status_code == 200
        assert response.json() == {"client": "demo", "status": "ok", "send_mode": "live", "llm": "openai",
                                   "phone_number_ids": [DEMO.phone_number_id]}
        assert live_app.api(EMPRENDEMY, "/health").json()["client"] == "emprendemy"

    def test_root_health_names_no_client(self, live_app: RunningApp):
        response = live_app.http.get(live_app.url + "/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert "clients" not in body and "demo" not in response.text and "emprendemy" not in response.text

    def test_unknown_client_is_404(self, live_app: RunningApp):
        assert get(live_app, "nobody", "/health", {"Authorization": f"Bearer {DEMO.api_key}"}).status_code == 404


class TestConversationScoping:
    def test_own_conversation_lists_its_messages_in_order(self, live_app: RunningApp, graph: FakeGraph):
        conversation_id = demo_conversation(live_app, graph)
        response = live_app.api(DEMO, f"/conversations/{conversation_id}/messages")
        assert response.status_code == 200
        messages = response.json()
        assert [(m["direction"], m["text"]) for m in messages][0] == ("in", "hola")
        assert messages[-1]["direction"] == "out"

    def test_other_clients_conversation_is_404(self, live_app: RunningApp, graph: FakeGraph):
        conversation_id = demo_conversation(live_app, graph)
        response = live_app.api(EMPRENDEMY, f"/conversations/{conversation_id}/messages")
        assert response.status_code == 404
        assert "hola" not in response.text
        assert live_app.api(EMPRENDEMY, "/conversations").json() == []

    def test_unknown_conversation_is_404(self, live_app: RunningApp):
        response = live_app.api(DEMO, "/conversations/999999/messages")
        assert response.status_code == 404
        assert isinstance(response.json()["detail"], str)

    def test_conversation_lists_are_per_client(self, live_app: RunningApp, graph: FakeGraph):
        demo_conversation(live_app, graph, "5491155550011")
        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550012", "hola")
        assert live_app.post_webhook(delivery, EMPRENDEMY.secret).json()["stored"] == 1
        assert [c["user_key"] for c in live_app.api(DEMO, "/conversations").json()] == ["5491155550011"]
        assert [c["user_key"] for c in live_app.api(EMPRENDEMY, "/conversations").json()] == ["5491155550012"]


class TestPagination:
    @pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=501", "offset=-1", "limit=abc", "offset=1.5"])
    def test_out_of_range_paging_is_422(self, live_app: RunningApp, query: str):
        assert live_app.api(DEMO, f"/conversations?{query}").status_code == 422
        assert live_app.api(DEMO, f"/conversations/1/messages?{query}").status_code == 422

    def test_limit_and_offset_page_through_conversations(self, live_app: RunningApp):
        for n in range(3):
            delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, f"549115555002{n}", "hola")
            assert live_app.post_webhook(delivery, DEMO.secret).json()["stored"] == 1
        everything = [c["id"] for c in live_app.api(DEMO, "/conversations").json()]
        assert len(everything) == 3
        first = [c["id"] for c in live_app.api(DEMO, "/conversations?limit=2").json()]
        rest = [c["id"] for c in live_app.api(DEMO, "/conversations?limit=2&offset=2").json()]
        assert first + rest == everything
        assert live_app.api(DEMO, "/conversations?offset=3").json() == []
        assert live_app.api(DEMO, "/conversations?limit=500").status_code == 200
