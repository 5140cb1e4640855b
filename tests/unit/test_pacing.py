"""Pacer: sends from one business number are spaced by its rate, sends to one person by the pair interval; slots are
booked in the order asked, and waits are real only when a slot lies ahead. Time and sleep are injected."""

from __future__ import annotations

import pytest

from core.whatsapp.pacing import Pacer


class FakeTime:
    """A monotonic clock that only moves when the pacer sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(time: FakeTime, *, per_second: float = 10, pair_interval: float = 6) -> Pacer:
    return Pacer(per_number_per_second=per_second, pair_interval_seconds=pair_interval, monotonic=time.monotonic,
                 sleep=time.sleep)


class TestReserve:
    def test_the_first_send_goes_at_once(self) -> None:
        assert pacer(FakeTime()).reserve("2001", "a") == 0

    def test_one_number_to_many_people_is_spaced_by_its_rate(self) -> None:
        paced = pacer(FakeTime(), per_second=10)
        delays = [paced.reserve("2001", person) for person in "abcd"]
        assert delays == pytest.approx([0, 0.1, 0.2, 0.3])

    def test_one_person_is_spaced_by_the_pair_interval(self) -> None:
        paced = pacer(FakeTime(), per_second=10, pair_interval=6)
        assert [paced.reserve("2001", "a") for _ in range(3)] == pytest.approx([0, 6, 12])

    def test_another_person_is_not_held_back_by_a_busy_pair(self) -> None:
        paced = pacer(FakeTime(), per_second=10, pair_interval=6)
        paced.reserve("2001", "a")
        paced.reserve("2001", "a")  # waits for a's pair interval, 6 s
        # Meta: 131056 is per pair, "you can still send to a different number"; the number itself is idle.
        assert paced.reserve("2001", "b") == pytest.approx(0.1)

    def test_others_fill_the_time_before_a_send_booked_ahead_and_step_around_it(self) -> None:
        paced = pacer(FakeTime(), per_second=10, pair_interval=0.25)
        assert paced.reserve("2001", "a") == 0
        assert paced.reserve("2001", "a") == pytest.approx(0.25)  # booked ahead by a's pair interval
        assert [paced.reserve("2001", person) for person in "bcd"] == pytest.approx([0.1, 0.35, 0.45])

    def test_numbers_are_paced_independently(self) -> None:
        paced = pacer(FakeTime(), per_second=1)
        paced.reserve("2001", "a")
        assert paced.reserve("2002", "a") == 0

    def test_time_that_passed_is_not_waited_again(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=1, pair_interval=6)
        paced.reserve("2001", "a")
        time.now += 10
        assert paced.reserve("2001", "a") == 0

    def test_forgetting_old_pairs_keeps_the_slots_still_ahead(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=1000, pair_interval=6)
        paced.reserve("2001", "busy")
        time.now += 0.001
        for person in range(10_001):  # past the bound that makes the pacer forget
            paced.reserve("2002", str(person))
        assert paced.reserve("2001", "busy") == pytest.approx(6 - 0.001)


@pytest.mark.anyio
class TestWait:
    async def test_sleeps_only_when_the_slot_lies_ahead(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=10, pair_interval=2)
        for _ in range(3):
            await paced.wait("2001", "a")
        assert time.sleeps == pytest.approx([2, 2])

    async def test_callers_are_served_in_the_order_they_asked(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=4, pair_interval=0)
        delays = [paced.reserve("2001", person) for person in "abc"]
        assert delays == sorted(delays) and len(set(delays)) == 3
