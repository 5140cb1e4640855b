"""Bounds of one turn as pure rules: which messages and images the model sees, and where a long reply is cut."""

from __future__ import annotations

from datetime import UTC, datetime

from core.llm.agent import Turn, bounded_batch
from core.llm.bounds import TurnBounds, cut_reply
from core.storage.records import Conversation, StoredMessage
from tests.unit.fakes import make_client

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def message(n: int) -> StoredMessage:
    return StoredMessage(id=n, conversation_id=1, wamid=f"wamid.{n}", direction="in", role="user", type="image",
                         text=f"foto {n}", payload={"n": n}, status=None, error=None, wa_timestamp=T0, batch_id=None,
                         processed_at=None, prompt_tokens=0, completion_tokens=0, created_at=T0)


def turn(count: int, images: int) -> Turn:
    conversation = Conversation(id=1, client="demo", phone_number_id="2001", user_key="549", wa_id="549", user_id=None,
                                contact_name=None, mode="bot", due_at=None, last_inbound_at=T0, prompt_tokens=0,
                                completion_tokens=0, created_at=T0, updated_at=T0)
    batch = [message(n) for n in range(1, count + 1)]
    return Turn(make_client(), conversation, [], batch, T0, {n: f"data:image/jpeg;base64,{n}" for n in range(1, images + 1)})


def test_within_the_bounds_the_batch_is_as_it_came() -> None:
    limits: list[str] = []
    batch, images = bounded_batch(turn(3, 3), TurnBounds(batch_messages=3, images=3), limits)
    assert [m.id for m in batch] == [1, 2, 3] and sorted(images) == [1, 2, 3] and limits == []


def test_only_the_latest_images_are_passed_the_others_reach_the_model_as_captions() -> None:
    limits: list[str] = []
    batch, images = bounded_batch(turn(6, 6), TurnBounds(images=2), limits)
    assert [m.id for m in batch] == [1, 2, 3, 4, 5, 6]
    assert sorted(images) == [5, 6]
    assert limits == ["images per model call: 2 (MAX_IMAGES_PER_TURN)"]


def test_a_long_burst_keeps_its_latest_messages_after_one_line_for_the_rest() -> None:
    limits: list[str] = []
    batch, images = bounded_batch(turn(10, 10), TurnBounds(batch_messages=4, images=10), limits)
    assert [m.text for m in batch] == ["[7 earlier messages of this burst are not shown; the first said: «foto 1»]",
                                       "foto 8", "foto 9", "foto 10"]
    assert sorted(images) == [8, 9, 10]  # the summary line carries no image
    assert limits == ["messages per model call: 4 (MAX_BATCH_MESSAGES)"]


def test_a_reply_is_cut_at_a_paragraph_or_sentence_and_marked() -> None:
    text = "Primer párrafo con algo.\n\nSegundo párrafo. Con otra frase larga que no entra entera."
    assert cut_reply(text, 1000) == (text, False)
    cut, was_cut = cut_reply(text, 60)
    assert was_cut and cut == "Primer párrafo con algo.\n\nSegundo párrafo.…" and len(cut) <= 60
    assert cut_reply("x" * 500, 100) == ("x" * 99 + "…", True)  # no place to cut: at the bound
