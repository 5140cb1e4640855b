"""Pacer: at most `rate` sends from one business number in any second, one person's sends the pair interval apart;
each send goes the earliest time both allow, in the order asked, and waits are real only when that time lies ahead.
Time and sleep are injected."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

    def test_a_burst_of_up_to_the_rate_goes_at_once_and_the_rest_a_second_later(self) -> None:
        paced = pacer(FakeTime(), per_second=80, pair_interval=1)
        delays = [paced.reserve("2001", str(person)) for person in range(170)]
        assert delays == [0] * 80 + [1] * 80 + [2] * 10

    def test_the_window_slides_with_the_sends(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=3, pair_interval=0)
        assert [paced.reserve("2001", person) for person in "ab"] == [0, 0]
        time.now += 0.5
        # One more fits in the second that began with a and b; then the next frees up when a and b leave it.
        assert [paced.reserve("2001", person) for person in "cde"] == pytest.approx([0, 0.5, 0.5])
        assert paced.reserve("2001", "f") == pytest.approx(1.0)  # c leaves at 1.5, which is now + 1.0

    def test_a_fractional_rate_rounds_down_within_a_second(self) -> None:
        # 80 a second shared by 3 processes: 26 each, so that the three never make more than 80 in one second.
        paced = pacer(FakeTime(), per_second=80 / 3, pair_interval=0)
        assert (paced.limit, paced.window) == (26, 1.0)
        delays = [paced.reserve("2001", str(person)) for person in range(27)]
        assert delays == [0] * 26 + [1]

    def test_a_rate_below_one_a_second_allows_one_send_a_period(self) -> None:
        paced = pacer(FakeTime(), per_second=0.5, pair_interval=0)
        assert [paced.reserve("2001", person) for person in "abc"] == pytest.approx([0, 2, 4])

    def test_one_person_is_spaced_by_the_pair_interval(self) -> None:
        paced = pacer(FakeTime(), per_second=10, pair_interval=6)
        assert [paced.reserve("2001", "a") for _ in range(3)] == pytest.approx([0, 6, 12])

    def test_another_person_is_not_held_back_by_a_busy_pair(self) -> None:
        paced = pacer(FakeTime(), per_second=10, pair_interval=6)
        paced.reserve("2001", "a")
        paced.reserve("2001", "a")  # waits for a's pair interval, 6 s
        # Meta: 131056 is per pair, "you can still send to a different number"; the number itself has room.
        assert paced.reserve("2001", "b") == 0

    def test_others_fill_the_time_before_a_send_booked_ahead_and_count_it_in_its_second(self) -> None:
        paced = pacer(FakeTime(), per_second=2, pair_interval=0.25)
        assert paced.reserve("2001", "a") == 0
        assert paced.reserve("2001", "a") == pytest.approx(0.25)  # booked ahead by a's pair interval
        # b fits beside a's first send; c's second is full (a at 0.25 and b at 0), so c goes when b leaves it.
        assert [paced.reserve("2001", person) for person in "bcd"] == pytest.approx([1.0, 1.25, 2.0])

    def test_numbers_are_paced_independently(self) -> None:
        paced = pacer(FakeTime(), per_second=1)
        paced.reserve("2001", "a")
        assert paced.reserve("2002", "b") == 0

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


class TestMemoryAndCost:
    def test_a_long_broadcast_keeps_only_the_bookings_that_still_constrain(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=80, pair_interval=1)
        for person in range(20_000):  # a broadcast queued at once: its last send is 250 s ahead
            paced.reserve("2001", str(person))
        # The pairs' intervals all lie ahead, so they are kept; of the number's send times, about one window's.
        assert paced.held() - 20_000 <= 2 * 80
        time.now += 300
        for person in range(20_000, 30_001):  # everyone above is past now: the sweep drops them
            paced.reserve("2002", str(person))
            time.now += 0.1
        assert paced.held() <= 20_000

    def test_booking_costs_about_the_same_however_many_sends_are_queued(self) -> None:
        # Comparisons of times counted, not clock time: O(n) per booking (the bug this pacer once had: 10,000
        # bookings took 4 s) makes ten times the queue cost ten times as much per booking.
        per_booking = [comparisons_per_booking(queued) for queued in (2_000, 20_000)]
        assert per_booking[0] > 0
        assert per_booking[1] < 1.5 * per_booking[0]


class Instant(float):
    """A time that counts the comparisons and sums made with it (and with the times derived from it)."""

    counted = 0

    def _count(self) -> None:
        Instant.counted += 1

    def __lt__(self, other: object) -> bool:
        self._count()
        return float(self) < float(other)  # type: ignore[arg-type]

    def __le__(self, other: object) -> bool:
        self._count()
        return float(self) <= float(other)  # type: ignore[arg-type]

    def __gt__(self, other: object) -> bool:
        self._count()
        return float(self) > float(other)  # type: ignore[arg-type]

    def __ge__(self, other: object) -> bool:
        self._count()
        return float(self) >= float(other)  # type: ignore[arg-type]

    def __add__(self, other: object) -> Instant:
        self._count()
        return Instant(float(self) + float(other))  # type: ignore[arg-type]

    __radd__ = __add__

    def __sub__(self, other: object) -> Instant:
        self._count()
        return Instant(float(self) - float(other))  # type: ignore[arg-type]

    def __rsub__(self, other: object) -> Instant:
        self._count()
        return Instant(float(other) - float(self))  # type: ignore[arg-type]


def comparisons_per_booking(queued: int) -> float:
    """A broadcast of `queued` two-part replies booked at once (the second part held by its pair interval)."""
    now = Instant(1000.0)
    paced = Pacer(per_number_per_second=80, pair_interval_seconds=1, monotonic=lambda: now)
    Instant.counted = 0
    for person in range(queued // 2):
        paced.reserve("2001", str(person))
        paced.reserve("2001", str(person))
    return Instant.counted / queued


@pytest.mark.anyio
class TestWait:
    async def test_sleeps_only_when_the_slot_lies_ahead(self) -> None:
        time = FakeTime()
        paced = pacer(time, per_second=10, pair_interval=2)
        for _ in range(3):
            await paced.wait("2001", "a")
        assert time.sleeps == pytest.approx([2, 2])


@dataclass(frozen=True)
class Ask:
    """One call to reserve: after `after` seconds, a send from `number` to `person`."""

    after: float
    number: str
    person: str


@dataclass(frozen=True)
class Booked:
    ask: Ask
    asked_at: float
    earliest: float  # what the pair interval allowed
    slot: float


asks = st.builds(Ask, after=st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.1, 0.25, 0.5, 1.0, 1.7]),
                 number=st.sampled_from(["2001", "2002"]), person=st.sampled_from("abcdef"))


def run(rate: float, pair_interval: float, pattern: list[Ask]) -> tuple[Pacer, list[Booked]]:
    time = FakeTime()
    paced = pacer(time, per_second=rate, pair_interval=pair_interval)
    booked: list[Booked] = []
    last_for_pair: dict[tuple[str, str], float] = {}
    for ask in pattern:
        time.now += ask.after
        pair = (ask.number, ask.person)
        earliest = max(time.now, last_for_pair[pair] + pair_interval) if pair in last_for_pair else time.now
        slot = time.now + paced.reserve(ask.number, ask.person)
        last_for_pair[pair] = slot
        booked.append(Booked(ask, time.now, earliest, slot))
    return paced, booked


def most_in_one_window(times: list[float], window: float) -> int:
    """The most sends in any window [start, start + window): one that starts at a send holds the most."""
    times = sorted(times)
    return max((bisect.bisect_left(times, start + window) - index for index, start in enumerate(times)), default=0)


def first_allowed(slots: list[float], earliest: float, limit: int, window: float) -> float:
    """Brute force: the first time from `earliest` at which one more send keeps every window within the limit."""
    for candidate in sorted({earliest} | {slot + window for slot in slots if slot + window > earliest}):
        if most_in_one_window([*slots, candidate], window) <= limit:
            return candidate
    raise AssertionError("some time after all the slots is always allowed")


rates = st.sampled_from([1.0, 2.0, 2.5, 3.0, 0.5, 10.0])
pair_intervals = st.sampled_from([0.0, 0.3, 1.0, 6.0])


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(rates, pair_intervals, st.lists(asks, max_size=60))
    def test_no_window_ever_holds_more_than_the_limit(self, rate: float, pair_interval: float,
                                                     pattern: list[Ask]) -> None:
        paced, booked = run(rate, pair_interval, pattern)
        assert paced.limit <= max(rate, 1) and paced.limit / paced.window <= rate * (1 + 1e-9)
        for number in ("2001", "2002"):
            slots = [entry.slot for entry in booked if entry.ask.number == number]
            assert most_in_one_window(slots, paced.window) <= paced.limit
            if rate >= 1:
                assert most_in_one_window(slots, 1.0) <= rate

    @settings(max_examples=300, deadline=None)
    @given(rates, pair_intervals, st.lists(asks, max_size=60))
    def test_each_send_goes_the_earliest_time_the_limits_allow(self, rate: float, pair_interval: float,
                                                              pattern: list[Ask]) -> None:
        paced, booked = run(rate, pair_interval, pattern)
        for index, entry in enumerate(booked):
            assert entry.slot >= entry.earliest  # never sooner than its pair interval, or than it was asked
            before = [other.slot for other in booked[:index] if other.ask.number == entry.ask.number]
            assert entry.slot == first_allowed(before, entry.earliest, paced.limit, paced.window)

    @settings(max_examples=300, deadline=None)
    @given(rates, pair_intervals, st.lists(asks, max_size=60))
    def test_callers_are_served_in_the_order_they_asked(self, rate: float, pair_interval: float,
                                                        pattern: list[Ask]) -> None:
        # Only a pair interval can let a later caller overtake an earlier one: the earlier one's, never its own.
        _, booked = run(rate, pair_interval, pattern)
        for index, later in enumerate(booked):
            for earlier in booked[:index]:
                if earlier.ask.number == later.ask.number and earlier.earliest <= later.earliest:
                    assert earlier.slot <= later.slot
