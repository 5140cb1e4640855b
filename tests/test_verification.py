"""GET /webhook: Meta's verification handshake echoes hub.challenge only for a known verify token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import DEMO, EMPRENDEMY, RunningApp

GLOBAL_TOKEN = "global-verify-token"
DEMO_TOKEN = "demo-verify-token"
EMPRENDEMY_TOKEN = "emprendemy-verify-token"


def handshake(app: RunningApp, **params: str) -> httpx.Response:
    query = {f"hub.{name}": value for name, value in params.items()}
    return app.http.get(app.url + "/webhook", params=query)


@pytest.fixture
def app(start_app: Any) -> RunningApp:
    """A global token plus a token of demo's own; emprendemy has none of its own."""
    return start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_VERIFY_TOKEN": DEMO_TOKEN,
                      "EMPRENDEMY_PHONE_NUMBER_IDS": EMPRENDEMY.phone_number_id},
                     whatsapp_verify_token=GLOBAL_TOKEN)


class TestHandshakeAccepted:
    def test_global_token_echoes_the_challenge_as_plain_text(self, app: RunningApp):
        response = handshake(app, mode="subscribe", verify_token=GLOBAL_TOKEN, challenge="1158201444")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == "1158201444"

    def test_client_token_echoes_the_challenge(self, app: RunningApp):
        response = handshake(app, mode="subscribe", verify_token=DEMO_TOKEN, challenge="abc-123")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == "abc-123"

    def test_client_token_works_without_a_global_token(self, start_app: Any):
        app = start_app({"EMPRENDEMY_VERIFY_TOKEN": EMPRENDEMY_TOKEN})
        response = handshake(app, mode="subscribe", verify_token=EMPRENDEMY_TOKEN, challenge="42")
        assert response.status_code == 200
        assert response.text == "42"

    def test_challenge_is_echoed_verbatim_not_as_json(self, app: RunningApp):
        challenge = '<b>"x"</b> & ñ'
        response = handshake(app, mode="subscribe", verify_token=GLOBAL_TOKEN, challenge=challenge)
        assert response.status_code == 200
        assert response.text == challenge


class TestHandshakeRefused:
    @pytest.mark.parametrize("token", ["wrong", GLOBAL_TOKEN[:-1], GLOBAL_TOKEN + "x", GLOBAL_TOKEN.upper(), ""])
    def test_wrong_token_is_403(self, app: RunningApp, token: str):
        response = handshake(app, mode="subscribe", verify_token=token, challenge="1158201444")
        assert response.status_code == 403
        assert "1158201444" not in response.text

    def test_missing_token_is_403(self, app: RunningApp):
        response = handshake(app, mode="subscribe", challenge="1158201444")
        assert response.status_code == 403
        assert "1158201444" not in response.text

    @pytest.mark.parametrize("mode", ["unsubscribe", "SUBSCRIBE", "", None])
    def test_mode_other_than_subscribe_is_403(self, app: RunningApp, mode: str | None):
        params = {"verify_token": GLOBAL_TOKEN, "challenge": "1158201444"}
        if mode is not None:
            params["mode"] = mode
        response = handshake(app, **params)
        assert response.status_code == 403
        assert "1158201444" not in response.text

    @pytest.mark.parametrize("token", ["", "anything", "None"])
    def test_no_token_configured_anywhere_is_403(self, start_app: Any, token: str):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id})
        response = handshake(app, mode="subscribe", verify_token=token, challenge="1158201444")
        assert response.status_code == 403
        assert "1158201444" not in response.text

    def test_blank_tokens_in_env_do_not_open_the_handshake(self, start_app: Any):
        app = start_app({"WHATSAPP_VERIFY_TOKEN": "", "DEMO_VERIFY_TOKEN": "  ", "EMPRENDEMY_VERIFY_TOKEN": ""})
        for token in ("", "  "):
            assert handshake(app, mode="subscribe", verify_token=token, challenge="7").status_code == 403

    @pytest.mark.parametrize("challenge", [None, ""], ids=["absent", "empty"])
    def test_missing_challenge_with_good_token_is_400(self, app: RunningApp, challenge: str | None):
        params = {"mode": "subscribe", "verify_token": GLOBAL_TOKEN}
        if challenge is not None:
            params["challenge"] = challenge
        response = handshake(app, **params)
        assert response.status_code == 400
        assert "challenge" in response.text
