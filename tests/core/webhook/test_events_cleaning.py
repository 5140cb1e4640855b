"""parse_events cleans what no store can take: lone surrogates become U+FFFD, over-deep parts a marker."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.webhook.events import (MAX_PAYLOAD_DEPTH, TOO_DEEP, InboundMessage, OtherChange, StatusUpdate, needs_cleaning,
                                 parse_events)
from tests.support import load_delivery

WABA_ID = "1001"
PHONE_NUMBER_ID = "2001"


def events_from_json(document: dict[str, Any]) -> list[Any]:
    # Through JSON text, as the webhook gets it: json.dumps writes a lone surrogate as the escape \ud800.
    return parse_events(json.loads(json.dumps(document)))


def nested(depth: int) -> Any:
    node: Any = "fondo"
    for level in range(depth):
        node = {"in": node} if level % 2 else [node]
    return node


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


class TestLoneSurrogates:
    def test_in_a_status_error_become_replacement_characters(self):
        document = load_delivery("status_failed.json", WABA_ID, PHONE_NUMBER_ID)
        status = document["entry"][0]["changes"][0]["value"]["statuses"][0]
        status["errors"][0]["title"] = "fuera de la ventana\udc80"

        [event] = events_from_json(document)

        assert isinstance(event, StatusUpdate)
        assert event.errors[0]["title"] == "fuera de la ventana\ufffd"
        assert event.payload["errors"][0]["title"] == "fuera de la ventana\ufffd"

    def test_in_another_change_become_replacement_characters(self):
        document = load_delivery("template_status.json", WABA_ID, PHONE_NUMBER_ID)
        document["entry"][0]["changes"][0]["value"]["reason"] = "\ud800"

        [event] = events_from_json(document)

        assert isinstance(event, OtherChange)
        assert event.value["reason"] == "\ufffd"

    def test_an_escaped_pair_is_one_character_and_a_reversed_pair_two_replacements(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        message = document["entry"][0]["changes"][0]["value"]["messages"][0]
        message["text"]["body"] = "\ud83d\ude00 \ude00\ud83d"

        [event] = events_from_json(document)

        assert isinstance(event, InboundMessage)
        assert event.text == "\U0001F600 \ufffd\ufffd"


class TestDepth:
    def test_a_message_payload_keeps_at_most_the_limit_of_levels(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        message = document["entry"][0]["changes"][0]["value"]["messages"][0]
        message["details"] = nested(500)

        [event] = events_from_json(document)

        assert isinstance(event, InboundMessage)
        assert depth_of(event.payload) == MAX_PAYLOAD_DEPTH
        assert TOO_DEEP in json.dumps(event.payload)
        assert event.text == message["text"]["body"]

    def test_a_payload_at_the_limit_is_kept_whole(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        message = document["entry"][0]["changes"][0]["value"]["messages"][0]
        message["details"] = nested(MAX_PAYLOAD_DEPTH - 1)  # the message object itself is the first level

        [event] = events_from_json(document)

        assert event.payload == message


def text_body(body: str) -> str:
    """A recorded text delivery as JSON text whose message reads `body`, written into the text as it is."""
    document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
    document["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "@BODY@"
    return json.dumps(document).replace("@BODY@", body)


class TestWhatTheWebhookSkips:
    """The webhook cleans only bodies needs_cleaning() points at: every way in must be pointed at."""

    @pytest.mark.parametrize("raw", [
        text_body(r"a\u0000b"), text_body(r"a\ud800b"), text_body(r"a\uDC80b"), text_body(r"\uDbFf"),
        # json decodes with surrogatepass: a surrogate written in UTF-8, or in UTF-16, needs no escape.
        text_body("a\ud800b").encode("utf-8", "surrogatepass"), text_body("a\ud800b").encode("utf-16", "surrogatepass"),
        # json pairs a high escape with the low escape right after it, and only that: these are not pairs.
        text_body(r"\ud83d\ud83d\ude00"), text_body(r"\ud83d\ude00\ude00"), text_body(r"\\ud83d\ude00"),
        text_body("deep").replace('"type"', '"deep": ' + json.dumps(nested(MAX_PAYLOAD_DEPTH)) + ', "type"'),
    ], ids=["nul", "surrogate", "upper case", "mixed case", "utf-8 surrogate", "utf-16 surrogate", "high high low",
            "high low low", "escaped backslash", "deep"])
    def test_a_body_holding_what_no_store_takes_is_pointed_at(self, raw: str | bytes):
        body = raw if isinstance(raw, bytes) else raw.encode()
        payload = json.loads(body)

        assert parse_events(payload, clean=False) != parse_events(payload)  # skipping would store it as it is
        assert needs_cleaning(body)

    @pytest.mark.parametrize("name", ["text.json", "status_failed.json", "several_messages.json", "order.json",
                                      "template_status.json"])
    def test_recorded_deliveries_need_no_cleaning_and_are_read_the_same_without(self, name: str):
        body = json.dumps(load_delivery(name, WABA_ID, PHONE_NUMBER_ID)).encode()

        assert not needs_cleaning(body)
        payload = json.loads(body)
        assert parse_events(payload, clean=False) == parse_events(payload)

    def test_escaped_accents_alone_need_no_cleaning(self):
        body = text_body(r"\u00bfD\u00f3nde est\u00e1n?").encode()

        assert not needs_cleaning(body)
        [event] = parse_events(json.loads(body), clean=False)
        assert isinstance(event, InboundMessage) and event.text == "¿Dónde están?"

    def test_an_emoji_written_as_an_escaped_pair_needs_no_cleaning(self):
        body = text_body(r"hola \ud83d\ude00").encode()

        assert not needs_cleaning(body)
        [event] = parse_events(json.loads(body), clean=False)
        assert isinstance(event, InboundMessage) and event.text == "hola \U0001F600"


# Texts full of what the JSON writer escapes and json pairs or leaves alone: surrogates, NUL, backslashes, quotes.
tricky_text = st.lists(st.one_of(st.sampled_from(
    ["\ud83d", "\udbff", "\ude00", "\udc00", "\U0001F600", "\x00", "\\", "\\u", "\\ud83d", '"', "u", "d83d",
     "\u00e1", "a"]), st.characters(codec=None)), max_size=8).map("".join)


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(texts=st.lists(tricky_text, min_size=3, max_size=3), ascii_only=st.booleans(), upper=st.booleans())
def test_a_body_needs_cleaning_whenever_skipping_it_would_keep_something_else(texts: list[str], ascii_only: bool,
                                                                              upper: bool):
    """Escaped as Meta writes (ASCII, \\uXXXX) or as raw UTF-8 (surrogates too), hex in either case."""
    document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
    value = document["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["profile"]["name"] = texts[0]
    value["messages"][0]["text"]["body"] = texts[1]
    value["messages"][0][texts[2]] = texts[2]
    text = json.dumps(document, ensure_ascii=ascii_only)
    if upper:
        text = re.sub(r"\\u[0-9a-f]{4}", lambda escape: escape.group().upper().replace("\\U", "\\u"), text)
    body = text.encode("utf-8", "surrogatepass")
    payload = json.loads(body)

    if not needs_cleaning(body):
        assert parse_events(payload, clean=False) == parse_events(payload)
