"""Log lines: one record is one line, whatever a value holds; plain values stay bare, tracebacks stay as they are."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from core.logs import KeyValueFormatter
from tests.conftest import DEMO, RunningApp
from tests.support import load_delivery, text_delivery

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def record(message: str = "event.name", exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("core.test", logging.WARNING, __file__, 1, message, None, exc_info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def line(message: str = "event.name", **extra: Any) -> str:
    return KeyValueFormatter(FORMAT).format(record(message, **extra))


def has_control_characters(text: str) -> bool:
    return any(ord(char) < 32 or 0x7f <= ord(char) <= 0x9f or char in "\u2028\u2029" for char in text)


FORGERIES = ["\n2026-01-01 00:00:00,000 INFO forged", "a\rb", "\x1b[2J\x1b[31mred", "a\u2028b", "a\u2029b",
             "a\x85b", "a\x0bb\x0cc", "a\x00b", "tab\there"]


class TestOneRecordOneLine:
    @pytest.mark.parametrize("value", FORGERIES)
    def test_a_value_with_control_characters_is_escaped(self, value: str):
        written = line(mode=value)
        assert written.splitlines() == [written]
        assert not has_control_characters(written)

    @pytest.mark.parametrize("value", FORGERIES)
    def test_the_message_with_control_characters_is_escaped(self, value: str):
        written = line(f"refused {value}")
        assert written.splitlines() == [written]
        assert not has_control_characters(written)

    def test_a_forged_line_without_spaces_stays_inside_the_value(self):
        # Only values with a plain space used to be quoted: tabs or no-break spaces got a newline through bare.
        written = line("webhook.verification_refused", mode="\n2026-01-01\tINFO\u00a0forged")
        assert written.endswith(r"webhook.verification_refused mode='\n2026-01-01\tINFO\xa0forged'")

    def test_a_value_that_is_not_a_string_is_escaped_too(self):
        class Shouting:
            def __str__(self) -> str:
                return "line one\nline two"

        assert line(error=Shouting()).endswith(r"error='line one\nline two'")


class TestQuoting:
    @pytest.mark.parametrize("value, written", [
        ("demo", "demo"), ("wamid.HBgM=", "'wamid.HBgM='"), ("a b", "'a b'"), ("", "''"),
        ("it's", "\"it's\""), ('say "hi"', "'say \"hi\"'"), ("k=v", "'k=v'"), ("back\\slash", "'back\\\\slash'"),
        ("dueño@example.com", "dueño@example.com"), ("demo,emprendemy", "demo,emprendemy"),
    ])
    def test_strings(self, value: str, written: str):
        assert line(field=value).endswith(f" field={written}")

    @pytest.mark.parametrize("value, written", [(3, "3"), (2.5, "2.5"), (None, "None"), (True, "True"),
                                                ([1, 2], "'[1, 2]'")])
    def test_other_values(self, value: Any, written: str):
        assert line(field=value).endswith(f" field={written}")

    def test_a_forged_field_cannot_pass_for_a_real_one(self):
        assert line(client="demo status=ok").endswith(" client='demo status=ok'")

    def test_a_plain_message_is_unchanged(self):
        assert line("Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)").endswith(
            " WARNING core.test Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)")


class TestTracebacks:
    def test_a_traceback_stays_multi_line_after_the_fields(self):
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
        written = KeyValueFormatter(FORMAT).format(record("turn.failed", exc_info, client="demo"))
        head, *trace = written.splitlines()
        assert head.endswith("turn.failed client=demo")
        assert trace[0] == "Traceback (most recent call last):"
        assert trace[-1] == "ValueError: boom"


def test_a_forged_hub_mode_is_logged_on_one_line(live_app: RunningApp, caplog: pytest.LogCaptureFixture):
    forged = "\n2026-01-01\t00:00:00,000\tINFO\tcore.webhook\tforged"
    response = live_app.http.get(live_app.url + "/webhook", params={"hub.mode": forged, "hub.verify_token": "x",
                                                                    "hub.challenge": "1"})
    assert response.status_code == 403
    [refused] = [r for r in caplog.records if r.getMessage() == "webhook.verification_refused"]
    assert refused.mode == forged
    written = KeyValueFormatter(FORMAT).format(refused)
    assert written.splitlines() == [written]
    assert written.endswith(
        r"webhook.verification_refused mode='\n2026-01-01\t00:00:00,000\tINFO\tcore.webhook\tforged'")


def webhook_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "core.webhook" and r.getMessage() == event]


class TestWebhookLines:
    """A line per message or status is DEBUG (at INFO it cost an acknowledgement as much CPU as the rest of it
    outside the store); a status with errors, a reply that did not arrive, stays INFO."""

    def test_at_info_messages_and_plain_statuses_write_no_line_and_failed_statuses_do(
        self, live_app: RunningApp, caplog: pytest.LogCaptureFixture
    ):
        assert live_app.settings.log_level == "INFO"
        stored = live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550701", "hola"),
                                       DEMO.secret)
        delivered = live_app.post_webhook(load_delivery("status_delivered.json", DEMO.waba_id, DEMO.phone_number_id),
                                          DEMO.secret)
        failed = live_app.post_webhook(load_delivery("status_failed.json", DEMO.waba_id, DEMO.phone_number_id),
                                       DEMO.secret)

        assert [stored.json()["stored"], delivered.status_code, failed.status_code] == [1, 200, 200]
        assert webhook_lines(caplog, "webhook.message") == []
        [line] = webhook_lines(caplog, "webhook.status")
        assert (line.levelno, line.status, line.errors[0]["code"]) == (logging.INFO, "failed", 131047)

    def test_at_debug_each_message_and_status_has_its_line(self, start_app: Any, caplog: pytest.LogCaptureFixture):
        app = start_app(DEMO.env(), log_level="DEBUG")
        message = text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550702", "hola", wamid="wamid.LOG01")

        app.post_webhook(message, DEMO.secret)
        app.post_webhook(message, DEMO.secret)
        app.post_webhook(load_delivery("status_delivered.json", DEMO.waba_id, DEMO.phone_number_id), DEMO.secret)

        [new] = webhook_lines(caplog, "webhook.message")
        [again] = webhook_lines(caplog, "webhook.duplicate")
        [status] = webhook_lines(caplog, "webhook.status")
        assert (new.levelno, new.client, new.wamid, new.type) == (logging.DEBUG, "demo", "wamid.LOG01", "text")
        assert again.conversation == new.conversation
        assert (status.levelno, status.status) == (logging.DEBUG, "delivered")
