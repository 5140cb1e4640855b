"""Secrets never reach logs or responses, whatever happens in a turn."""

from __future__ import annotations

import logging

import pytest

from core.logs import KeyValueFormatter
from tests.conftest import DEMO, EMPRENDEMY
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

OPENAI_KEY = "sk-test-secret-value-0123456789"


def test_no_secret_in_any_log_line_or_api_answer(start_app, graph: FakeGraph, llm: FakeOpenAI,
                                                 caplog: pytest.LogCaptureFixture):
    app = start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key=OPENAI_KEY, openai_base_url=llm.url,
                    whatsapp_api_base_url=graph.url, whatsapp_verify_token="verify-secret", log_level="DEBUG")
    secrets = [OPENAI_KEY, "verify-secret", DEMO.token, DEMO.secret, DEMO.api_key, EMPRENDEMY.token,
               EMPRENDEMY.secret, EMPRENDEMY.api_key]
    with caplog.at_level(logging.DEBUG):
        llm.script(Reply(tool_calls=[("business_hours", {})]), Reply(content="listo"))
        app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550030", "hola"), DEMO.secret)
        wait_for(lambda: len(graph.texts()) == 1, what="the first reply")
        graph.fail_next(401, 190, "Error validating access token")
        app.post_webhook(text_delivery(EMPRENDEMY.waba_id, EMPRENDEMY.phone_number_id, "5491155550031", "hola"),
                         EMPRENDEMY.secret)
        wait_for(lambda: any(r.getMessage() == "whatsapp.token_invalid" for r in caplog.records), what="the refusal log")
        app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550032", "x"), "wrong-secret")
        answers = [app.api(DEMO, "/health").text, app.api(DEMO, "/conversations").text,
                   app.http.get(app.url + "/health").text]

    formatter = KeyValueFormatter("%(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    assert any("whatsapp.token_invalid" in line for line in lines)
    for secret in secrets:
        assert not [line for line in lines if secret in line], f"a log line holds {secret!r}"
        assert not [text for text in answers if secret in text], f"an API answer holds {secret!r}"
