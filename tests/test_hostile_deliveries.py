"""Deliveries with content no store or serialiser can take as is: stored cleaned, the rest of the delivery too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import DEMO, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import new_wamid, text_delivery, wait_for

ANA, BETO = "5491155550101", "5491155550102"


@pytest.fixture(params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, start_app: Any, graph: FakeGraph, llm: FakeOpenAI, tmp_db: str) -> RunningApp:
    """The demo client live against the stand-ins, on a SQLite file or on a PostgreSQL database."""
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else tmp_db
    return start_app(DEMO.env(), openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url, database_url=database_url)


def two_people_delivery(first: dict[str, Any], first_name: str = "Ana") -> dict[str, Any]:
    """One delivery: a message from Ana (`first`), then an ordinary one from Beto, in the same change."""
    delivery = text_delivery(DEMO.waba_id, DEMO.phone_number_id, ANA, "", name=first_name)
    value = delivery["entry"][0]["changes"][0]["value"]
    value["messages"] = [first, text_delivery(DEMO.waba_id, DEMO.phone_number_id, BETO, "hola")[
        "entry"][0]["changes"][0]["value"]["messages"][0]]
    value["contacts"].append({"profile": {"name": "Beto"}, "wa_id": BETO})
    return delivery


def text_message(body: str, **extra: Any) -> dict[str, Any]:
    message = text_delivery(DEMO.waba_id, DEMO.phone_number_id, ANA, body, wamid=new_wamid())
    return {**message["entry"][0]["changes"][0]["value"]["messages"][0], **extra}


def inbound(app: RunningApp, user_key: str) -> list[dict[str, Any]]:
    return [m for m in app.messages(DEMO, user_key) if m["direction"] == "in"]


class TestLoneSurrogates:
    def test_are_stored_as_replacement_characters_and_the_rest_of_the_delivery_too(self, app: RunningApp):
        # json.dumps writes a lone surrogate as the escape \ud800, valid JSON that Python decodes into a str that
        # no UTF-8 store can encode.
        first = text_message("precio\ud800?", note={"\udc00key": ["x\udfff"]})
        raw = json.dumps(two_people_delivery(first, first_name="An\ud83da")).encode()
        assert b"\\ud800" in raw

        response = app.post_webhook(raw, DEMO.secret)

        assert response.status_code == 200, response.text
        assert response.json()["stored"] == 2
        [ana] = inbound(app, ANA)
        assert ana["text"] == "precio\ufffd?"
        assert ana["payload"]["text"]["body"] == "precio\ufffd?"
        assert ana["payload"]["note"] == {"\ufffdkey": ["x\ufffd"]}
        assert app.conversation(DEMO, ANA)["contact_name"] == "An\ufffda"
        assert [m["text"] for m in inbound(app, BETO)] == ["hola"]

    def test_surrogate_pairs_written_as_two_escapes_stay_one_character(self, app: RunningApp):
        raw = json.dumps(text_delivery(DEMO.waba_id, DEMO.phone_number_id, ANA, "ok \U0001F600")).encode()
        assert b"\\ud83d\\ude00" in raw

        assert app.post_webhook(raw, DEMO.secret).status_code == 200

        assert [m["text"] for m in inbound(app, ANA)] == ["ok \U0001F600"]


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": "fondo"}
    for level in range(depth - 1):
        node = {"level": node} if level % 2 else {"items": [node]}
    return node


class TestDeepPayloads:
    def test_are_cut_and_the_conversation_can_still_be_read(self, app: RunningApp, graph: FakeGraph):
        first = text_message("hola", details=nested(400))

        response = app.post_webhook(two_people_delivery(first), DEMO.secret)

        assert response.status_code == 200, response.text
        assert response.json()["stored"] == 2
        conversation = app.conversation(DEMO, ANA)
        listed = app.api(DEMO, f"/conversations/{conversation['id']}/messages")
        assert listed.status_code == 200, listed.text
        [ana] = [m for m in listed.json() if m["direction"] == "in"]
        assert ana["text"] == "hola"
        assert depth_of(ana["payload"]) <= 32
        assert "[nested deeper than 32 levels]" in json.dumps(ana["payload"])
        # The turn runs as usual: both people are answered.
        wait_for(lambda: len(graph.texts()) == 2, what="both replies")
        wait_for(lambda: app.settled(DEMO, ANA), what="Ana's conversation to settle")

    def test_payloads_within_the_limit_are_kept_whole(self, app: RunningApp):
        first = text_message("hola", details=nested(20))

        assert app.post_webhook(two_people_delivery(first), DEMO.secret).status_code == 200

        [ana] = inbound(app, ANA)
        assert ana["payload"]["details"] == nested(20)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0

