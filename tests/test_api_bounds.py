"""Integers in a client API's paths and queries stay within the 64-bit range the store holds: beyond it, 422."""

from __future__ import annotations


import httpx
import pytest

from tests.conftest import DEMO, RunningApp
from tests.support import text_delivery

BIGGEST = 2**63 - 1
HUGE = ["99999999999999999999999", str(2**63), str(10**30), str(-(2**63) - 1)]
METHOD_PATHS = [("GET", "/conversations/{id}/messages"), ("POST", "/conversations/{id}/takeover"),
                ("POST", "/conversations/{id}/release"),
                ("POST", "/conversations/{id}/resolve"), ("POST", "/conversations/{id}/messages")]


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    """start_app's DATABASE_URL: each test runs on both stores (SQLite and asyncpg overflow at 2**63)."""
    return each_store_url


def call(app: RunningApp, method: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {DEMO.api_key}"}
    body = {"text": "hola"} if method == "POST" and path.endswith("/messages") else None
    return app.http.request(method, f"{app.url}/api/v1/{DEMO.name}{path}", headers=headers, json=body)


def assert_422_naming(response: httpx.Response, where: str, name: str) -> None:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == [where, name]
    assert str(BIGGEST) in error["msg"] or str(-(2**63)) in error["msg"] or "greater than or equal to 0" in error["msg"]


class TestConversationId:
    @pytest.mark.parametrize("huge", HUGE)
    @pytest.mark.parametrize("method, path", METHOD_PATHS)
    def test_out_of_range_id_is_422(self, live_app: RunningApp, method: str, path: str, huge: str):
        assert_422_naming(call(live_app, method, path.format(id=huge)), "path", "conversation_id")

    @pytest.mark.parametrize("method, path", METHOD_PATHS)
    def test_the_biggest_id_is_an_unknown_conversation(self, live_app: RunningApp, method: str, path: str):
        for edge in (BIGGEST, -(2**63)):
            response = call(live_app, method, path.format(id=edge))
            assert response.status_code == 404, response.text


class TestPaging:
    @pytest.mark.parametrize("huge", HUGE[:3])
    @pytest.mark.parametrize("path", ["/conversations", "/conversations/1/messages"])
    def test_out_of_range_offset_is_422(self, live_app: RunningApp, path: str, huge: str):
        assert_422_naming(call(live_app, "GET", f"{path}?offset={huge}"), "query", "offset")

    @pytest.mark.parametrize("huge", HUGE)
    @pytest.mark.parametrize("path", ["/conversations", "/conversations/1/messages"])
    def test_out_of_range_limit_is_422(self, live_app: RunningApp, path: str, huge: str):
        response = call(live_app, "GET", f"{path}?limit={huge}")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]

    def test_the_biggest_offset_is_an_empty_page(self, live_app: RunningApp):
        response = call(live_app, "GET", f"/conversations?offset={BIGGEST}&limit=500")
        assert response.status_code == 200, response.text
        assert response.json() == []

    def test_the_biggest_offset_of_a_conversations_messages_is_an_empty_page(self, live_app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550070", "hola")
        assert live_app.post_webhook(delivery, DEMO.secret).json()["stored"] == 1
        [conversation] = call(live_app, "GET", "/conversations").json()
        response = call(live_app, "GET", f"/conversations/{conversation['id']}/messages?offset={BIGGEST}")
        assert response.status_code == 200, response.text
        assert response.json() == []
