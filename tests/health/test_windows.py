"""The health windows on their own, with a fake clock: no sleeps, exact counts."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_appmetrics.health.windows import (
    BucketedCounter,
    LatencyRing,
    LatencyStats,
    LatencyWindow,
    RecentUsers,
    RequestWindow,
    UserWindow,
)
from tests.support.clock import FakeClock


def run_threads(target: object, count: int = 8) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_implementations_satisfy_their_protocols() -> None:
    assert isinstance(LatencyRing(), LatencyWindow)
    assert isinstance(BucketedCounter(), RequestWindow)
    assert isinstance(RecentUsers(), UserWindow)


# -- latency ring -------------------------------------------------------------------------


def test_empty_latency_window_reports_zeros() -> None:
    stats = LatencyRing().stats()
    assert (stats.count, stats.average, stats.p95, stats.maximum) == (0, 0.0, 0.0, 0.0)


def test_latency_average_p95_and_max() -> None:
    ring = LatencyRing(100)
    for value in range(1, 101):  # 1..100, recorded out of order
        ring.record(float((value * 37) % 100 + 1))
    stats = ring.stats()
    assert stats.count == 100
    assert stats.average == pytest.approx(50.5)
    assert stats.p95 == 95.0  # nearest rank: the 95th of 100 sorted values
    assert stats.maximum == 100.0


def test_p95_of_few_samples_is_an_observed_value() -> None:
    ring = LatencyRing()
    for value in (0.1, 0.2, 0.3):
        ring.record(value)
    assert ring.stats().p95 == 0.3
    single = LatencyRing()
    single.record(0.25)
    assert single.stats().p95 == 0.25


def test_latency_ring_keeps_only_the_last_n() -> None:
    ring = LatencyRing(10)
    for value in range(1000):
        ring.record(float(value))
    stats = ring.stats()
    assert stats.count == 10
    assert stats.average == pytest.approx(sum(range(990, 1000)) / 10)
    assert stats.maximum == 999.0


def test_latency_ring_records_from_8_threads_exactly() -> None:
    ring = LatencyRing(100_000)

    def work() -> None:
        for _ in range(10_000):
            ring.record(0.5)

    run_threads(work)
    stats = ring.stats()
    assert stats.count == 80_000
    assert stats.average == 0.5


def test_latency_ring_reads_while_8_threads_record() -> None:
    ring = LatencyRing(1000)
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            stats = ring.stats()
            seen.append(stats.count)
            assert len(ring.recent()) <= 1000

    reader = threading.Thread(target=read)
    reader.start()
    try:

        def work() -> None:
            for _ in range(20_000):
                ring.record(0.25)

        run_threads(work)
    finally:
        stop.set()
        reader.join()
    assert seen
    assert ring.stats() == LatencyStats(count=1000, average=0.25, p95=0.25, maximum=0.25)


class _MutatedMidCopy(deque[float]):
    """A deque whose first copies meet an append from another thread (free-threaded
    Python can interleave them; the GIL build rarely does)."""

    def __init__(self, values: list[float], failures: int) -> None:
        super().__init__(values, maxlen=10)
        self.failures = failures

    def __iter__(self) -> Iterator[float]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("deque mutated during iteration")
        return super().__iter__()


def test_latency_ring_readers_retry_a_copy_that_met_an_append() -> None:
    ring = LatencyRing(10)
    ring._values = _MutatedMidCopy([0.1, 0.2, 0.3], failures=3)
    assert ring.recent() == (0.1, 0.2, 0.3)
    ring._values = _MutatedMidCopy([0.1, 0.2, 0.3], failures=3)
    assert ring.stats().count == 3


def test_latency_ring_rejects_a_zero_size() -> None:
    with pytest.raises(ValueError, match="size"):
        LatencyRing(0)


# -- request/error counter ------------------------------------------------------------------


def test_counts_are_exact_far_above_the_ring_size() -> None:
    clock = FakeClock()
    counter = BucketedCounter(300, clock=clock)
    for i in range(1500):
        counter.record(error=i % 3 != 0)  # 1000 errors, 500 successes
        clock.advance(0.1)  # 150 s in all: inside the window
    counts = counter.counts()
    assert (counts.requests, counts.errors) == (1500, 1000)
    assert counts.error_ratio == pytest.approx(1000 / 1500)
    assert counts.window_seconds == 300


def test_counts_expire_after_the_window() -> None:
    clock = FakeClock(0.0)
    counter = BucketedCounter(300, clock=clock)
    for _ in range(1000):
        counter.record(error=True)
    clock.advance(299)
    assert counter.counts().errors == 1000  # still inside the 300 s window
    clock.advance(1)
    assert counter.counts().errors == 0  # 300 s later: expired
    assert counter.counts().requests == 0
    assert counter.counts().error_ratio == 0.0


def test_the_window_slides_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    counter = BucketedCounter(300, clock=clock)
    for _ in range(60):  # one request every 10 s for 600 s
        counter.record(error=False)
        clock.advance(10)
    clock.now = 590.0
    # 5 s buckets: the window now spans [295 s, 590 s], requests at 300, 310, ..., 590.
    assert counter.counts().requests == 30


def test_a_reused_bucket_starts_from_zero() -> None:
    clock = FakeClock(0.0)
    counter = BucketedCounter(300, clock=clock)
    for _ in range(5):
        counter.record(error=True)
    clock.advance(300)  # same slot, next lap
    counter.record(error=False)
    counts = counter.counts()
    assert (counts.requests, counts.errors) == (1, 0)


def test_a_million_records_stay_exact_and_bounded() -> None:
    clock = FakeClock(0.0)
    counter = BucketedCounter(300, clock=clock)
    for i in range(1_000_000):
        clock.now = i / 1000  # 1000 requests/s over 1000 s
        counter.record(error=i % 10 == 0)
    counts = counter.counts()
    # Last timestamp 999.999 s: the window spans the buckets from 700 s on.
    assert counts.requests == 1_000_000 - 700_000
    assert counts.errors == 30_000
    assert len(counter._requests) == counter.buckets == 60  # memory is fixed


def test_counter_records_from_8_threads_exactly() -> None:
    counter = BucketedCounter(300, clock=FakeClock())

    def work() -> None:
        for i in range(10_000):
            counter.record(error=i % 2 == 0)

    run_threads(work)
    counts = counter.counts()
    assert (counts.requests, counts.errors) == (80_000, 40_000)


def test_counter_records_positionally() -> None:
    # The request path passes ``error`` positionally: cheaper than a keyword.
    counter = BucketedCounter(300, clock=FakeClock())
    counter.record(True)
    counter.record(False)
    counter.record(error=False)
    assert (counter.counts().requests, counter.counts().errors) == (3, 1)


def test_counter_window_is_configurable() -> None:
    clock = FakeClock(0.0)
    counter = BucketedCounter(60, clock=clock)
    counter.record(error=True)
    clock.advance(59)
    assert counter.counts().errors == 1
    clock.advance(1)
    assert counter.counts().errors == 0


@pytest.mark.parametrize("window", [0, -1.0, float("inf")])
def test_counter_rejects_a_bad_window(window: float) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        BucketedCounter(window)


# -- recent users ---------------------------------------------------------------------------


def test_users_are_counted_once_each() -> None:
    users = RecentUsers(clock=FakeClock())
    for name in ("ann", "bob", "ann", "cy", "bob"):
        users.touch(name)
    assert users.count() == 3


def test_users_expire_after_the_window_unless_seen_again() -> None:
    clock = FakeClock(0.0)
    users = RecentUsers(300, clock=clock)
    users.touch("ann")
    users.touch("bob")
    clock.advance(200)
    users.touch("ann")  # ann stays active
    clock.advance(150)
    assert users.count() == 1  # bob was last seen 350 s ago
    clock.advance(200)
    assert users.count() == 0


def test_users_are_capped_at_max_tracked() -> None:
    users = RecentUsers(max_tracked=100, clock=FakeClock())
    for i in range(10_000):
        users.touch(f"user-{i}")
    assert users.count() == 100


def test_user_entries_have_a_fixed_size_whatever_the_identity() -> None:
    users = RecentUsers(clock=FakeClock())
    users.touch("x" * 1_000_000)
    users.touch("\udcff surrogate")  # what a raw header can decode to
    assert users.count() == 2
    assert all(isinstance(key, int) and key.bit_length() <= 64 for key in users._seen)


def test_users_from_8_threads_are_counted_exactly() -> None:
    users = RecentUsers(max_tracked=100_000, clock=FakeClock())
    ids = iter(range(8))
    lock = threading.Lock()

    def work() -> None:
        with lock:
            me = next(ids)
        for i in range(1000):
            users.touch(f"{me}-{i}")
            users.touch(f"{me}-{i}")

    run_threads(work)
    assert users.count() == 8000


def test_users_reject_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_tracked"):
        RecentUsers(max_tracked=0)
    with pytest.raises(ValueError, match="window_seconds"):
        RecentUsers(0)


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=120, allow_nan=False), st.booleans()),
        max_size=200,
    ),
    later=st.floats(min_value=0, max_value=400, allow_nan=False),
)
def test_counter_matches_a_naive_model(steps: list[tuple[float, bool]], later: float) -> None:
    """Whatever the timing, the counter equals a list of every event filtered by bucket."""
    clock = FakeClock(0.0)
    counter = BucketedCounter(300, clock=clock)
    events: list[tuple[int, bool]] = []
    for advance, error in steps:
        clock.advance(advance)
        counter.record(error=error)
        events.append((int(clock.now // counter.width), error))
    clock.advance(later)
    now = int(clock.now // counter.width)
    inside = [error for bucket, error in events if now - bucket < counter.buckets]
    counts = counter.counts()
    assert (counts.requests, counts.errors) == (len(inside), sum(inside))


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.floats(min_value=0, max_value=100, allow_nan=False)),
        max_size=200,
    )
)
def test_users_match_a_naive_model(steps: list[tuple[int, float]]) -> None:
    clock = FakeClock(0.0)
    users = RecentUsers(300, max_tracked=10, clock=clock)
    last_seen: dict[int, float] = {}
    for user, advance in steps:
        clock.advance(advance)
        users.touch(f"u{user}")
        last_seen[user] = clock.now
    recent = sorted((seen for seen in last_seen.values() if seen > clock.now - 300), reverse=True)
    assert users.count() == min(len(recent), 10)


def test_a_users_burst_refreshes_its_last_sighting_once_a_second() -> None:
    clock = FakeClock(0.0)
    users = RecentUsers(300, clock=clock)
    users.touch("ann")
    clock.advance(0.5)
    users.touch("ann")  # within the second: ann still counts from t=0
    clock.now = 300.2
    assert users.count() == 0
    users.touch("ann")
    clock.advance(1.5)
    users.touch("ann")  # a second later: refreshed to t=301.7
    clock.now = 601.0
    assert users.count() == 1
    clock.now = 601.8
    assert users.count() == 0


# -- batches: requests handed over later, with their end times on another clock ------------


#: Quarter seconds: exact in binary, so moving a time to another clock and back is exact.
_QUARTERS = st.integers(0, 480).map(lambda n: n / 4)


@given(
    steps=st.lists(st.tuples(_QUARTERS, st.booleans()), max_size=200),
    batch=st.integers(1, 50),
    later=_QUARTERS,
    skew=st.integers(-(10**6), 10**6).map(lambda n: n / 4),
)
def test_batches_count_each_request_at_its_end(
    steps: list[tuple[float, bool]], batch: int, later: float, skew: float
) -> None:
    """Requests handed over in batches, their end times on a clock *skew* seconds off the
    window's, count as if each had been recorded when it ended."""
    clock = FakeClock(0.0)
    eager = BucketedCounter(300, clock=clock)
    batched = BucketedCounter(300, clock=clock)
    ended: list[float] = []
    failed: list[float] = []
    for advance, error in steps:
        clock.advance(advance)
        eager.record(error)
        ended.append(clock.now + skew)
        if error:
            failed.append(clock.now + skew)
        if len(ended) == batch:
            batched.record_many(ended, failed, clock.now + skew)
            ended, failed = [], []
    clock.advance(later)
    batched.record_many(ended, failed, clock.now + skew)
    assert batched.counts() == eager.counts()
    assert batched.series() == eager.series()


def test_a_batch_spanning_buckets_and_the_window_edge() -> None:
    clock = FakeClock(1000.0)  # buckets of 5 s: 1000 starts one
    counter = BucketedCounter(300, clock=clock)
    # On the log's clock (now = 50): ended 400, 7, 3 and 0.5 s ago; the last two failed.
    counter.record_many([-350.0, 43.0, 47.0, 49.5], [47.0, 49.5], 50.0)
    counts = counter.counts()
    assert (counts.requests, counts.errors) == (3, 2)  # 400 s ago is out of the window
    # At 993, 997 and 999.5 on the window's clock: the buckets 990-995 and 995-1000.
    slots = counter.series()
    assert [(s.requests, s.errors) for s in slots[-3:]] == [(1, 0), (2, 2), (0, 0)]


def test_a_time_after_now_counts_now() -> None:
    clock = FakeClock(1000.0)
    counter = BucketedCounter(300, clock=clock)
    counter.record_many([60.0], [], 50.0)  # ten seconds in the future: a clock went back
    assert counter.series()[-1].requests == 1


def test_latency_batches_keep_the_latest() -> None:
    ring = LatencyRing(3)
    ring.record_many([1.0, 2.0])
    ring.record_many([3.0, 4.0, 5.0])
    assert ring.recent() == (3.0, 4.0, 5.0)


def test_user_batches_note_each_sighting_at_its_time() -> None:
    clock = FakeClock(1000.0)
    users = RecentUsers(300, clock=clock)
    # On the log's clock (now = 10): ann 250 s ago, bob 100 s ago, ann again 20 s ago.
    users.touch_many([("ann", -240.0), ("bob", -90.0)], 10.0)
    users.touch_many([("ann", -10.0)], 10.0)
    assert users.count() == 2
    clock.advance(211)  # bob's sighting (at 910) is out; ann's latest (at 980) is not
    assert users.count() == 1
    clock.advance(70)
    assert users.count() == 0


def test_an_older_sighting_in_a_batch_does_not_move_a_user_back() -> None:
    clock = FakeClock(1000.0)
    users = RecentUsers(300, clock=clock)
    users.touch("ann")  # at 1000
    users.touch_many([("ann", 500.0)], 1000.0)  # seen at 500 on the window's clock
    clock.now = 1299.0
    assert users.count() == 1
