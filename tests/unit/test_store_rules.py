"""The store's rules as pure functions, the same for every adapter: when a burst is due, how statuses apply, what a
turn keeps when an operator took over, when a conversation stays due, what an effect's attempt leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.storage.records import Debounce, NewMessage
from core.storage.rules import (applied_statuses, effect_outcome, inbound_handling, kept_after_turn, settled_at,
                                stays_due)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEBOUNCE = Debounce(seconds=3, max_seconds=15)


class TestSettledAt:
    def test_a_first_message_is_due_after_the_debounce_and_starts_the_burst(self) -> None:
        assert settled_at(T0, None, DEBOUNCE) == (T0 + timedelta(seconds=3), T0)

    def test_each_new_message_pushes_the_burst_back(self) -> None:
        assert settled_at(T0 + timedelta(seconds=5), T0, DEBOUNCE) == (T0 + timedelta(seconds=8), T0)

    def test_a_burst_that_never_settles_is_due_at_its_cap(self) -> None:
        assert settled_at(T0 + timedelta(seconds=14), T0, DEBOUNCE) == (T0 + timedelta(seconds=15), T0)


class TestAppliedStatuses:
    def test_statuses_in_any_order_end_at_the_furthest(self) -> None:
        reports = [("read", {}), ("sent", {}), ("delivered", {})]
        assert applied_statuses("sent", None, reports) == ("read", None, True)

    def test_nothing_moves_backwards(self) -> None:
        assert applied_statuses("read", None, [("delivered", {}), ("sent", {})]) == ("read", None, False)

    def test_failed_is_final_and_brings_its_errors(self) -> None:
        errors = [{"code": 131047, "title": "Re-engagement message"}]
        status, error, changed = applied_statuses("sent", None, [("failed", {"errors": errors}), ("read", {})])
        assert (status, error, changed) == ("failed", {"errors": errors}, True)

    def test_a_step_without_errors_keeps_the_error_there_was(self) -> None:
        kept = {"errors": [{"code": 1}]}
        assert applied_statuses("pending", kept, [("sent", None)]) == ("sent", kept, True)


class TestKeptAfterTurn:
    PRODUCED = [NewMessage(direction="internal", role="tool", text="catalogue"),
                NewMessage(direction="out", role="assistant", text="reply", status="pending")]

    def test_a_bot_conversation_keeps_the_steps_and_the_reply(self) -> None:
        assert kept_after_turn("bot", self.PRODUCED) == self.PRODUCED

    def test_a_conversation_taken_over_meanwhile_keeps_the_steps_and_drops_the_reply(self) -> None:
        assert kept_after_turn("human", self.PRODUCED) == self.PRODUCED[:1]


class TestStaysDue:
    def test_nothing_arrived_and_everything_sent_ends_the_turn(self) -> None:
        assert stays_due(None, unsent_reply=False) is False

    def test_a_message_that_arrived_meanwhile_keeps_it_due(self) -> None:
        assert stays_due(T0, unsent_reply=False) is True

    def test_an_unsent_reply_keeps_it_due(self) -> None:
        assert stays_due(None, unsent_reply=True) is True


class TestEffectOutcome:
    def test_no_error_is_done(self) -> None:
        assert effect_outcome(None, None) == "done"

    def test_an_error_with_a_retry_stays_pending(self) -> None:
        assert effect_outcome("421 try later", T0) == "pending"

    def test_an_error_without_a_retry_is_failed(self) -> None:
        assert effect_outcome("550 no such user", None) == "failed"


class TestInboundHandling:
    def test_with_no_switch_stored_the_bot_answers(self) -> None:
        assert inbound_handling(True, "bot", None) == (True, False)

    def test_with_the_bot_off_the_message_waits_for_a_person(self) -> None:
        assert inbound_handling(True, "bot", False) == (False, True)

    def test_a_conversation_a_person_holds_is_neither(self) -> None:
        assert inbound_handling(True, "human", False) == (False, False)

    def test_a_message_that_wants_no_reply_is_neither(self) -> None:
        assert inbound_handling(False, "bot", True) == (False, False)
