"""POST /webhook refuses what Meta did not sign for the client it names, and never answers 500 to junk."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.app import create_app
from core.config import Settings
from core.errors import ConfigError
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.conftest import TestClientIds as ClientIds
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import load_delivery, new_wamid, signed, text_delivery, wait_for

META_SECRET = "meta-secret"


def conversations(app: RunningApp, client: ClientIds) -> list[dict[str, Any]]:
    response = app.api(client, "/conversations")
    assert response.status_code == 200, response.text
    return response.json()


def replied_to(graph: FakeGraph, wa_id: str) -> list[Any]:
    return [call for call in graph.texts() if call.body.get("to") == wa_id]


def barrier(app: RunningApp, graph: FakeGraph, client: ClientIds, secret: str, wa_id: str) -> None:
    """Send a good message and wait for its reply: anything a refused delivery had set off would be out by then."""
    delivery = text_delivery(client.waba_id, client.phone_number_id, wa_id, "barrier")
    assert app.post_webhook(delivery, secret).json()["stored"] == 1
    wait_for(lambda: replied_to(graph, wa_id), what=f"the reply to the barrier message of {client.name}")


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == message]


def two_entry_delivery() -> dict[str, Any]:
    """One delivery whose first entry is demo's and second emprendemy's."""
    demo = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550101", "hola demo")
    emp = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550102", "hola emprendemy")
    return {"object": "whatsapp_business_account", "entry": demo["entry"] + emp["entry"]}


def env_without(*drop: str) -> dict[str, str]:
    env = {**DEMO.env(), **EMPRENDEMY.env()}
    for name in drop:
        env.pop(name)
    return env


class TestSignature:
    def test_good_signature_is_stored(self, live_app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola")
        response = live_app.post_webhook(delivery, DEMO.secret)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "stored": 1}
        assert [c["user_key"] for c in conversations(live_app, DEMO)] == ["5491155550001"]

    def test_wrong_secret_is_401(self, live_app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola")
        response = live_app.post_webhook(delivery, "not-the-secret")
        assert response.status_code == 401
        assert "does not match" in response.json()["detail"]
        assert conversations(live_app, DEMO) == []

    def test_missing_header_is_401(self, live_app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola")
        response = live_app.post_webhook(delivery, None)
        assert response.status_code == 401
        assert "missing" in response.json()["detail"]
        assert conversations(live_app, DEMO) == []

    @pytest.mark.parametrize("prefix", ["sha1=", "SHA256=", "", "sha256:"])
    def test_wrong_prefix_is_401(self, live_app: RunningApp, prefix: str):
        raw, headers = signed(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola"), None)
        headers["X-Hub-Signature-256"] = prefix + hmac.new(DEMO.secret.encode(), raw, hashlib.sha256).hexdigest()
        response = live_app.http.post(live_app.url + "/webhook", content=raw, headers=headers)
        assert response.status_code == 401
        assert conversations(live_app, DEMO) == []

    def test_signature_of_a_different_body_is_401(self, live_app: RunningApp):
        first = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola")
        _, headers = signed(first, DEMO.secret)
        tampered = json.dumps(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "pagame")).encode()
        response = live_app.http.post(live_app.url + "/webhook", content=tampered, headers=headers)
        assert response.status_code == 401
        assert conversations(live_app, DEMO) == []

    def test_signature_is_checked_over_the_raw_bytes_not_reserialised_json(self, live_app: RunningApp):
        # Same JSON document, different bytes (spacing, key order): only the signed bytes pass.
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550001", "hola")
        raw = json.dumps(delivery, indent=3, ensure_ascii=False).encode()
        response = live_app.post_webhook(raw, DEMO.secret)
        assert response.status_code == 200
        assert response.json()["stored"] == 1
        _, headers = signed(raw, DEMO.secret)
        compact = json.dumps(delivery, separators=(",", ":")).encode()
        assert live_app.http.post(live_app.url + "/webhook", content=compact, headers=headers).status_code == 401

    def test_bad_signature_is_refused_before_the_body_is_read_as_json(self, live_app: RunningApp):
        response = live_app.post_webhook(b"not json at all", "not-the-secret")
        assert response.status_code == 401


class TestCrossClientSignature:
    def test_other_clients_secret_is_401_and_nothing_is_stored_or_answered(
        self, live_app: RunningApp, graph: FakeGraph, llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
    ):
        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550201", "hola")
        response = live_app.post_webhook(delivery, DEMO.secret)

        assert response.status_code == 401
        assert "app secret of the client" in response.json()["detail"]
        assert conversations(live_app, EMPRENDEMY) == []
        assert conversations(live_app, DEMO) == []
        assert [r.client for r in records(caplog, "webhook.cross_client_signature")] == ["emprendemy"]
        barrier(live_app, graph, EMPRENDEMY, EMPRENDEMY.secret, "5491155550299")
        assert replied_to(graph, "5491155550201") == []
        assert [c["user_key"] for c in conversations(live_app, EMPRENDEMY)] == ["5491155550299"]
        assert all("hola" != m["content"] for r in llm.requests for m in r["messages"] if m["role"] == "user")

    def test_other_clients_secret_on_a_waba_only_change_is_401(self, live_app: RunningApp):
        delivery = load_delivery("account_update.json", EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id)
        assert live_app.post_webhook(delivery, DEMO.secret).status_code == 401
        assert live_app.post_webhook(delivery, EMPRENDEMY.secret).status_code == 200

    @pytest.mark.parametrize("secret", [DEMO.secret, EMPRENDEMY.secret], ids=["demo_secret", "emprendemy_secret"])
    def test_delivery_mixing_two_clients_is_401_whichever_secret_signs_it(
        self, live_app: RunningApp, graph: FakeGraph, secret: str
    ):
        response = live_app.post_webhook(two_entry_delivery(), secret)

        assert response.status_code == 401
        assert conversations(live_app, DEMO) == []
        assert conversations(live_app, EMPRENDEMY) == []
        barrier(live_app, graph, DEMO, DEMO.secret, "5491155550198")
        barrier(live_app, graph, EMPRENDEMY, EMPRENDEMY.secret, "5491155550199")
        assert replied_to(graph, "5491155550101") == []
        assert replied_to(graph, "5491155550102") == []

    def test_status_routed_to_one_client_cannot_change_another_clients_message(
        self, live_app: RunningApp, graph: FakeGraph
    ):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550301", "hola")
        assert live_app.post_webhook(delivery, DEMO.secret).json()["stored"] == 1
        wait_for(lambda: replied_to(graph, "5491155550301"), what="demo's reply")
        conversation_id = conversations(live_app, DEMO)[0]["id"]

        def outbound() -> list[dict[str, Any]]:
            found = live_app.api(DEMO, f"/conversations/{conversation_id}/messages").json()
            return [m for m in found if m["direction"] == "out" and m["wamid"]]

        reply = wait_for(outbound, what="demo's outbound message with its wamid")[0]
        forged = load_delivery("status_failed.json", EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id)
        forged["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = reply["wamid"]
        assert live_app.post_webhook(forged, EMPRENDEMY.secret).status_code == 200

        after = [m for m in outbound() if m["wamid"] == reply["wamid"]][0]
        assert after["status"] == reply["status"]
        assert after["error"] == reply["error"]


class TestSecretFallback:
    @pytest.fixture
    def app(self, start_app: Any, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
        """demo has its own secret; emprendemy has none and falls back to META_APP_SECRET."""
        return start_app(env_without("EMPRENDEMY_APP_SECRET"), meta_app_secret=META_SECRET,
                         openai_api_key="sk-test", openai_base_url=llm.url, whatsapp_api_base_url=graph.url)

    def test_client_without_own_secret_accepts_meta_app_secret(self, app: RunningApp, graph: FakeGraph):
        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550401", "hola")
        response = app.post_webhook(delivery, META_SECRET)
        assert response.status_code == 200
        assert response.json()["stored"] == 1
        assert wait_for(lambda: replied_to(graph, "5491155550401"), what="emprendemy's reply")[0].token == EMPRENDEMY.token

    def test_client_without_own_secret_refuses_another_clients_secret(self, app: RunningApp):
        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550402", "hola")
        assert app.post_webhook(delivery, DEMO.secret).status_code == 401
        assert conversations(app, EMPRENDEMY) == []

    def test_client_own_secret_takes_precedence_over_meta_app_secret(self, app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550403", "hola")
        assert app.post_webhook(delivery, META_SECRET).status_code == 401
        assert conversations(app, DEMO) == []
        assert app.post_webhook(delivery, DEMO.secret).status_code == 200

    def test_client_with_no_secret_while_others_have_one_is_refused_and_warned(
        self, start_app: Any, caplog: pytest.LogCaptureFixture
    ):
        env = {"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_APP_SECRET": DEMO.secret, "DEMO_API_KEY": DEMO.api_key,
               "EMPRENDEMY_PHONE_NUMBER_IDS": EMPRENDEMY.phone_number_id, "EMPRENDEMY_API_KEY": EMPRENDEMY.api_key}
        app = start_app(env)
        warned = records(caplog, "clients.no_app_secret")
        assert [r.client for r in warned] == ["emprendemy"]
        assert "EMPRENDEMY_APP_SECRET" in warned[0].detail

        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550404", "hola")
        assert app.post_webhook(delivery, None).status_code == 401
        assert app.post_webhook(delivery, DEMO.secret).status_code == 401
        assert conversations(app, EMPRENDEMY) == []


class TestClosedByDefault:
    def test_no_secret_anywhere_refuses_unsigned_and_says_what_to_set(self, start_app: Any,
                                                                       caplog: pytest.LogCaptureFixture):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key})

        assert records(caplog, "webhook.unsigned_accepted") == []
        assert records(caplog, "webhook.closed")[0].levelno == logging.WARNING
        response = app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550501", "hola"), None)
        assert response.status_code == 401
        assert "META_APP_SECRET" in response.json()["detail"]
        assert conversations(app, DEMO) == []

    def test_an_llm_key_and_smtp_without_a_secret_are_not_an_open_door(self, start_app: Any, llm: FakeOpenAI):
        env = {"EMPRENDEMY_PHONE_NUMBER_IDS": EMPRENDEMY.phone_number_id, "EMPRENDEMY_API_KEY": EMPRENDEMY.api_key,
               "EMPRENDEMY_SMTP_HOST": "127.0.0.1", "EMPRENDEMY_SMTP_TO": "ventas@example.com",
               "EMPRENDEMY_SMTP_FROM": "bot@example.com"}
        app = start_app(env, openai_api_key="sk-test", openai_base_url=llm.url, debounce_seconds=0)
        delivery = text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550502", "registrame")
        assert app.post_webhook(delivery, None).status_code == 401
        assert conversations(app, EMPRENDEMY) == []
        assert llm.requests == []

    def test_unsigned_is_accepted_only_when_allowed_for_local_development(self, start_app: Any,
                                                                          caplog: pytest.LogCaptureFixture):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_API_KEY": DEMO.api_key},
                        allow_unsigned_webhooks=True)

        assert records(caplog, "webhook.unsigned_accepted")[0].levelno == logging.WARNING
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550503", "hola")
        response = app.post_webhook(delivery, None)
        assert response.status_code == 200
        assert response.json()["stored"] == 1
        assert [c["user_key"] for c in conversations(app, DEMO)] == ["5491155550503"]

    @pytest.mark.parametrize(("env", "settings", "named"), [
        ({"DEMO_ACCESS_TOKEN": "t", "DEMO_APP_SECRET": "s"}, {}, "DEMO_ACCESS_TOKEN"),
        ({}, {"openai_api_key": "sk-test"}, "OPENAI_API_KEY"),
        ({"EMPRENDEMY_SMTP_HOST": "127.0.0.1", "EMPRENDEMY_SMTP_TO": "a@example.com",
          "EMPRENDEMY_SMTP_FROM": "bot@example.com"}, {}, "EMPRENDEMY_SMTP_HOST"),
        ({}, {"database_url": "postgresql://user:pw@127.0.0.1:1/db"}, "DATABASE_URL"),
    ])
    def test_allowing_unsigned_beside_a_live_setting_stops_startup(self, monkeypatch: pytest.MonkeyPatch, tmp_db: str,
                                                                   env: dict, settings: dict, named: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        options = {"database_url": tmp_db, "allow_unsigned_webhooks": True, **settings}
        with pytest.raises(ConfigError) as raised:
            create_app(Settings(_env_file=None, **options), env_file=None)
        assert "ALLOW_UNSIGNED_WEBHOOKS" in str(raised.value) and named in str(raised.value)

    def test_startup_with_a_secret_does_not_warn_about_unsigned(self, live_app: RunningApp,
                                                                caplog: pytest.LogCaptureFixture):
        assert records(caplog, "webhook.unsigned_accepted") == records(caplog, "webhook.closed") == []
        assert live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "1", "x"), None).status_code == 401


class TestMalformedBody:
    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"{not json", "not JSON"),
            (b"\xff\xfe\x00garbage", "not JSON"),
            (b"", "not JSON"),
            (b"[1, 2, 3]", "not a JSON object"),
            (b'"whatsapp_business_account"', "not a JSON object"),
            (b"42", "not a JSON object"),
            (b"null", "not a JSON object"),
            (b'{"object": "whatsapp_business_account", "entry": {"id": "1001"}}', "entry"),
            (b'{"object": "whatsapp_business_account", "entry": "1001"}', "entry"),
            (b'{"object": "whatsapp_business_account", "entry": [{"id": "1001", "changes": 7}]}', "changes"),
        ],
        ids=["not_json", "not_utf8", "empty", "array", "string", "number", "null", "entry_object", "entry_string",
             "changes_not_list"],
    )
    def test_malformed_body_is_400_with_a_reason(self, live_app: RunningApp, raw: bytes, reason: str):
        response = live_app.post_webhook(raw, DEMO.secret)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/json")
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        assert reason in detail

    @pytest.mark.parametrize("obj", ["page", "instagram", "", None])
    def test_other_object_is_acknowledged_and_ignored(self, live_app: RunningApp, obj: str | None):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550601", "hola")
        if obj is None:
            del delivery["object"]
        else:
            delivery["object"] = obj
        response = live_app.post_webhook(delivery, DEMO.secret)
        assert response.status_code == 200
        assert response.json() == {"status": "ignored"}
        assert conversations(live_app, DEMO) == []

    def test_malformed_parts_of_a_valid_delivery_are_acknowledged(self, live_app: RunningApp):
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550602", "hola")
        value = delivery["entry"][0]["changes"][0]["value"]
        value["messages"].append({"from": "5491155550602", "type": "text"})  # no id
        value["statuses"] = [{"status": "sent"}, "junk"]
        response = live_app.post_webhook(delivery, DEMO.secret)
        assert response.status_code == 200
        assert response.json()["stored"] == 1


@pytest.fixture
def small_app(start_app: Any, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    return start_app({**DEMO.env(), **EMPRENDEMY.env()}, webhook_max_body_bytes=2048, openai_api_key="sk-test",
                     openai_base_url=llm.url, whatsapp_api_base_url=graph.url)


def padded_delivery(size: int) -> bytes:
    """A valid demo delivery of exactly `size` bytes (the text is padded)."""
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550701", "", wamid=new_wamid())
    base = len(json.dumps(delivery).encode())
    delivery["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "a" * (size - base)
    raw = json.dumps(delivery).encode()
    assert len(raw) == size
    return raw


def chunks(raw: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start:start + size]


class TestBodyLimit:
    def test_body_over_limit_with_content_length_is_413(self, small_app: RunningApp):
        response = small_app.post_webhook(padded_delivery(2049), DEMO.secret)
        assert response.status_code == 413
        assert "2048" in response.json()["detail"]
        assert conversations(small_app, DEMO) == []

    def test_body_over_limit_chunked_is_413(self, small_app: RunningApp):
        raw, headers = signed(padded_delivery(4096), DEMO.secret)
        response = small_app.http.post(small_app.url + "/webhook", content=chunks(raw), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert response.status_code == 413
        assert conversations(small_app, DEMO) == []

    def test_unsigned_body_over_limit_is_413(self, small_app: RunningApp):
        assert small_app.post_webhook(b"x" * 5000, None).status_code == 413

    def test_body_at_the_limit_is_accepted(self, small_app: RunningApp):
        response = small_app.post_webhook(padded_delivery(2048), DEMO.secret)
        assert response.status_code == 200
        assert response.json()["stored"] == 1

    def test_chunked_body_within_limit_is_accepted(self, small_app: RunningApp):
        raw, headers = signed(padded_delivery(2000), DEMO.secret)
        response = small_app.http.post(small_app.url + "/webhook", content=chunks(raw, 300), headers=headers)
        assert response.status_code == 200
        assert response.json()["stored"] == 1

    def test_server_still_answers_after_refusing_a_large_body(self, small_app: RunningApp):
        raw, headers = signed(padded_delivery(8192), DEMO.secret)
        assert small_app.http.post(small_app.url + "/webhook", content=chunks(raw), headers=headers).status_code == 413
        with httpx.Client(timeout=10) as fresh:
            assert fresh.get(small_app.url + "/health").status_code == 200
        delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550702", "hola")
        assert small_app.post_webhook(delivery, DEMO.secret).status_code == 200


class TestRouting:
    def test_unknown_phone_number_id_is_acknowledged_logged_and_dropped(
        self, live_app: RunningApp, graph: FakeGraph, caplog: pytest.LogCaptureFixture
    ):
        delivery = text_delivery("1999", "2999", "5491155550801", "hola")
        response = live_app.post_webhook(delivery, DEMO.secret)

        assert response.status_code == 200
        assert response.json()["stored"] == 0
        assert conversations(live_app, DEMO) == []
        assert conversations(live_app, EMPRENDEMY) == []
        unrouted = records(caplog, "webhook.unrouted")
        assert [(r.waba_id, r.phone_number_id, r.levelno) for r in unrouted] == [("1999", "2999", logging.WARNING)]
        assert "unknown phone_number_id" in unrouted[0].reason
        barrier(live_app, graph, DEMO, DEMO.secret, "5491155550899")
        assert replied_to(graph, "5491155550801") == []

    def test_known_phone_with_foreign_waba_is_acknowledged_logged_and_not_answered(
        self, live_app: RunningApp, graph: FakeGraph, caplog: pytest.LogCaptureFixture
    ):
        delivery = text_delivery("1777", DEMO.phone_number_id, "5491155550802", "hola")
        response = live_app.post_webhook(delivery, DEMO.secret)

        assert response.status_code == 200
        assert response.json()["stored"] == 0
        assert conversations(live_app, DEMO) == []
        unrouted = records(caplog, "webhook.unrouted")
        assert [(r.waba_id, r.phone_number_id) for r in unrouted] == [("1777", DEMO.phone_number_id)]
        assert "demo" in unrouted[0].reason
        barrier(live_app, graph, DEMO, DEMO.secret, "5491155550898")
        assert replied_to(graph, "5491155550802") == []

    def test_demo_phone_under_emprendemy_waba_is_not_answered_as_either(self, live_app: RunningApp):
        delivery = text_delivery(EMPRENDEMY.waba_id, DEMO.phone_number_id, "5491155550803", "hola")
        for secret in (DEMO.secret, EMPRENDEMY.secret):
            assert live_app.post_webhook(delivery, secret).status_code == 200
        assert conversations(live_app, DEMO) == []
        assert conversations(live_app, EMPRENDEMY) == []

    def test_unknown_entry_beside_a_known_one_keeps_the_known_one(self, live_app: RunningApp):
        known = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550804", "hola")
        unknown = text_delivery("1999", "2999", "5491155550805", "hola")
        delivery = {"object": "whatsapp_business_account", "entry": unknown["entry"] + known["entry"]}
        response = live_app.post_webhook(delivery, DEMO.secret)
        assert response.status_code == 200
        assert response.json()["stored"] == 1
        assert [c["user_key"] for c in conversations(live_app, DEMO)] == ["5491155550804"]


class TestPathologicalBodies:
    def test_json_nested_deeper_than_the_parser_allows_is_400_not_500(self, live_app):
        body = b"[" * 100_000 + b"]" * 100_000  # 200 KB, under the body limit
        response = live_app.post_webhook(body, DEMO.secret)
        assert response.status_code == 400
        assert response.json() == {"detail": "body is not JSON"}
