"""The multiprocess scrape shows what prometheus_client's own collector shows for the same
files, however the files change between scrapes, and renders the page its encoders write.

Workers are real processes updating prometheus_client metrics with
``PROMETHEUS_MULTIPROC_DIR`` set (every type, every gauge mode); some stay alive, some
exit. The reference is :class:`prometheus_client.multiprocess.MultiProcessCollector` over a
copy of the directory in which the exited workers are marked dead
(:func:`prometheus_client.multiprocess.mark_process_dead`), both pages read with
prometheus_client's parsers. Values are multiples of 1/4, so sums are exact whatever the
order they are added in (the archive adds exited workers' values before the live ones).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from flask_appmetrics.metrics.multiprocess.exposition import format_value, writes_exemplars_as
from flask_appmetrics.metrics.multiprocess.setup import (
    CACHE_HIT_RATE,
    LocalGauges,
    encode,
    scrape_registry,
)

Encoder = Callable[[Collector], bytes]
Page = dict[tuple[str, frozenset[tuple[str, str]]], float]

TEXT = generate_latest
OPENMETRICS = choose_encoder("application/openmetrics-text;version=1.0.0")[0]
#: Prometheus 3 asks for UTF-8 names; another escaping scheme, another cache of lines.
OPENMETRICS_UTF8 = choose_encoder(
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"
)[0]
TEXT_DOTS = choose_encoder("text/plain;version=1.0.0;escaping=dots")[0]
ENCODERS = [TEXT, OPENMETRICS, OPENMETRICS_UTF8, TEXT_DOTS]

MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
         "mostrecent", "livemostrecent")  # fmt: skip

#: A worker: every type and gauge mode; ``step`` on stdin updates everything and adds
#: series (a new label value everywhere), ``exit`` ends it.
_WORKER = r"""
import sys
from prometheus_client import Counter, Gauge, Histogram, Summary
n = int(sys.argv[1])
modes = sys.argv[2].split(",")
jobs = Counter("jobs", "Jobs done", ["queue"])
odd = Counter("odd_total", 'Help with "quotes", \\ and\nnewline', ["v"])
latency = Histogram("latency_seconds", "Latency", ["route"], buckets=(0.25, 1, 2.5))
payload = Summary("payload_bytes", "Payload size")
gauges = {m: Gauge("g_" + m, "A gauge in mode " + m, ["k"], multiprocess_mode=m) for m in modes}
state = {"step": 0}

def step():
    s = state["step"]
    state["step"] += 1
    jobs.labels("a").inc(n + 1)
    jobs.labels(f"q{n}-{s}").inc(0.25)
    odd.labels('a "quoted\\ value\nwith newline" é').inc(0.5)
    for v in (0.25 * (n % 5), 1.0, 2.0 + n, 0.5):
        latency.labels(f"/r{(n + s) % 3}").observe(v)
    payload.observe(n * 2 + s)
    for i, (m, g) in enumerate(gauges.items()):
        g.labels("x").set(n * 0.25 - 1 + s)
        g.labels(f"only{n % 2}").set(-n - i)

step()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "exit":
        break
    step()
    print("done", flush=True)
"""


class Worker:
    def __init__(self, directory: Path, n: int) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(n), ",".join(MODES)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def step(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        assert self._line() == "done"

    def exit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("exit\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextmanager
def workers(directory: Path, numbers: range) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for n in numbers:
            started.append(Worker(directory, n))
        yield started
    finally:
        for w in started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            for stream in (w.proc.stdin, w.proc.stdout):
                if stream is not None:
                    stream.close()


def page(body: bytes, encoder: Encoder = TEXT) -> Page:
    text = body.decode()
    families = parse_text(text) if encoder in (TEXT, TEXT_DOTS) else parse_om(text)
    out: Page = {}
    for family in families:
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"{key} twice on the page"
            out[key] = s.value
    return out


def reference(directory: Path, exited: list[int], into: Path) -> Page:
    """prometheus_client's page for *directory*, with *exited* marked dead."""
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(directory, into)
    for pid in exited:
        mark_process_dead(pid, str(into))  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(into))  # type: ignore[no-untyped-call]
    return page(generate_latest(registry))


def ours(directory: Path, encoder: Encoder = TEXT) -> bytes:
    """The page ``/metrics`` serves, and a check that it is what the encoder itself writes
    for the same families (a second scrape: the files do not change in between)."""
    body = encode(scrape_registry(str(directory)), encoder)
    assert body == encoder(scrape_registry(str(directory)))
    return body


def _equal(mine: Page, theirs: Page) -> None:
    assert mine.keys() == theirs.keys()
    wrong = {k: (mine[k], theirs[k]) for k in mine if not _same(mine[k], theirs[k])}
    assert not wrong


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_live_and_exited_workers_every_type_and_mode(tmp_path: Path) -> None:
    live_dir = tmp_path / "mp"
    live_dir.mkdir()
    # The reference keeps the exited workers' files, which our scrape folds away.
    kept = tmp_path / "exited"
    with workers(live_dir, range(5)) as running:
        for w in running[3:]:
            w.step()
            w.exit()
        exited = [w.pid for w in running[3:]]
        shutil.copytree(live_dir, kept)
        live = running[:3]

        def check() -> Page:
            for p in live_dir.glob("*.db"):  # the live workers' files, as they are now
                shutil.copyfile(p, kept / p.name)
            expected = reference(kept, exited, tmp_path / "reference")
            for encoder in (TEXT, OPENMETRICS):
                _equal(page(ours(live_dir, encoder), encoder), expected)
            return expected

        first = check()
        # The exited workers are folded into the archive by that scrape.
        assert not [p for p in live_dir.iterdir() if any(f"_{pid}." in p.name for pid in exited)]
        # Values change in place, and new series are appended to the files.
        for w in live:
            w.step()
        second = check()
        assert len(second) > len(first)
        live[0].step()
        check()
        # A live worker exits: its live gauges leave the page, the rest stays.
        live[1].exit()
        exited.append(live[1].pid)
        after = check()
        assert ("g_livesum", frozenset({("k", "only1")})) not in after
        assert after[("jobs_total", frozenset({("queue", "a")}))] == sum(
            (n + 1) * steps for n, steps in ((0, 3), (1, 2), (2, 2), (3, 2), (4, 2))
        )
        hist = after[("latency_seconds_count", frozenset({("route", "/r0")}))]
        assert (
            hist == after[("latency_seconds_bucket", frozenset({("route", "/r0"), ("le", "+Inf")}))]
        )


def test_every_encoding_is_byte_for_byte_the_encoders_own(tmp_path: Path) -> None:
    with workers(tmp_path, range(2)) as running:
        running[0].step()
        for accept in (
            "",
            "text/plain;version=0.0.4",
            "text/plain;version=1.0.0;escaping=allow-utf-8",
            "text/plain;version=1.0.0;escaping=values",
            "application/openmetrics-text;version=1.0.0",
            "application/openmetrics-text;version=1.0.0;escaping=dots",
            "application/openmetrics-text",
        ):
            encoder = choose_encoder(accept)[0]
            for _ in range(2):  # lines made, then lines kept
                ours(tmp_path, encoder)


def _write(path: Path, rows: list[tuple[str, str, dict[str, str], float, float]]) -> None:
    """Entries written with prometheus_client's own writer, into *path*."""
    d = MmapedDict(str(path))
    for metric, sample, labels, value, ts in rows:
        key = mmap_key(metric, sample, list(labels), list(labels.values()), f"{metric} help")
        d.write_value(key, value, ts)
    d.close()


def _theirs(directory: Path) -> Page:
    return reference(directory, [], directory.parent / f"{directory.name}-ref")


def test_a_file_rewritten_in_place_with_other_keys_is_read_anew(tmp_path: Path) -> None:
    # The same name and inode with other contents: what a file deleted and created again
    # looks like when the pid and the inode number are both reused.
    directory = tmp_path / "mp"
    directory.mkdir()
    name = directory / f"counter_{os.getpid()}.db"
    _write(name, [("a", "a_total", {"x": "1"}, 1, 0), ("b", "b_total", {}, 2, 0)])
    _equal(page(ours(directory)), _theirs(directory))
    other = tmp_path / "other.db"
    _write(other, [("b", "b_total", {}, 5, 0), ("a", "a_total", {"x": "2"}, 7, 0)])
    ino = name.stat().st_ino
    with name.open("r+b") as f:
        f.write(other.read_bytes())
    assert name.stat().st_ino == ino
    mine = page(ours(directory))
    _equal(mine, _theirs(directory))
    assert mine == {
        ("a_total", frozenset({("x", "2")})): 7,
        ("b_total", frozenset()): 5,
    }


def test_a_file_that_grows_and_changes_between_scrapes(tmp_path: Path) -> None:
    directory = tmp_path / "mp"
    directory.mkdir()
    path = directory / f"histogram_{os.getpid()}.db"
    d = MmapedDict(str(path))
    keys = []
    for i in range(1200):  # past the first 64 KiB: the file is resized and mapped again
        key = mmap_key("h", "h_bucket", ["le"], [str(i * 0.25)], "h help")
        keys.append(key)
        d.write_value(key, i, 0)
        if i % 300 == 0:
            _equal(page(ours(directory)), _theirs(directory))
            d.write_value(keys[0], i * 2, 0)
    d.write_value(mmap_key("h", "h_sum", [], [], "h help"), 12.5, 0)
    d.close()
    mine = page(ours(directory))
    _equal(mine, _theirs(directory))
    assert path.stat().st_size > 1 << 16
    assert mine[("h_count", frozenset())] == sum(range(1, 1200)) + 900 * 2
    assert mine[("h_sum", frozenset())] == 12.5


def test_a_file_corrupted_after_it_was_read_is_skipped_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Both files are this (live) process's: neither is folded away.
    good = tmp_path / f"counter_{os.getpid()}.db"
    _write(good, [("jobs", "jobs_total", {}, 2, 0)])
    bad = tmp_path / f"summary_{os.getpid()}.db"
    _write(bad, [("size", "size_sum", {}, 5, 0), ("size", "size_count", {"k": "v"}, 1, 0)])
    assert page(ours(tmp_path))[("size_sum", frozenset())] == 5
    data = bytearray(bad.read_bytes())
    used = struct.unpack_from("i", data)[0]
    struct.pack_into("i", data, 0, used + 8)  # the used size now runs past the last entry
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        assert page(ours(tmp_path)) == {("jobs_total", frozenset()): 2}
    assert any(bad.name in r.getMessage() for r in caplog.records)


def test_a_key_prometheus_client_would_not_write_skips_its_file(tmp_path: Path) -> None:
    good = tmp_path / f"counter_{os.getpid()}.db"
    _write(good, [("jobs", "jobs_total", {}, 2, 0)])
    d = MmapedDict(str(tmp_path / "counter_2.db"))
    d.write_value(json.dumps(["bad name", "x", {}, "h"]), 1, 0)
    d.write_value("not json", 1, 0)
    d.close()
    assert page(ours(tmp_path)) == {("jobs_total", frozenset()): 2}


def test_mostrecent_without_a_timestamp_and_buckets_of_one_bound_spelled_twice(
    tmp_path: Path,
) -> None:
    pid = os.getpid()
    _write(tmp_path / f"gauge_mostrecent_{pid}.db", [("last", "last", {}, 3, 0)])
    _write(tmp_path / f"gauge_max_{pid}.db", [("peak", "peak", {}, float("nan"), 0)])
    _write(tmp_path / f"gauge_min_{pid}.db", [("low", "low", {}, float("-inf"), 0)])
    _write(
        tmp_path / f"histogram_{pid}.db",
        [
            ("h", "h_bucket", {"le": "1"}, 1, 0),
            ("h", "h_bucket", {"le": "1.0"}, 2, 0),
            ("h", "h_bucket", {"le": "+Inf"}, 4, 0),
            ("h", "h_count", {}, 99, 0),  # the count is the buckets', whatever a file says
            ("h", "h_sum", {}, 1e300, 0),
            ("h2", "h2_count", {"x": "1"}, 3, 0),  # no buckets: the file's count
        ],
    )
    mine = page(ours(tmp_path))
    _equal(mine, _theirs(tmp_path))
    assert ("last", frozenset()) not in mine
    assert mine[("h_bucket", frozenset({("le", "1.0")}))] == 3
    assert mine[("h_count", frozenset())] == 7
    assert mine[("h2_count", frozenset({("x", "1")}))] == 3


def test_values_are_written_as_prometheus_client_writes_them() -> None:
    rng = random.Random(5)
    values = [0.0, -0.0, 1.0, 0.1, 1e-7, 123456.0, 999999.9, 1e6, 1234567.0, 1e15, 1e16,
              1e22, -1e6, -1234567.0, 5e-324, 1.7976931348623157e308, math.inf, -math.inf,
              math.nan, 2.0**53, 2.0**53 + 2]  # fmt: skip
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(20_000)]
    values += [float(rng.randint(0, 10**9)) for _ in range(20_000)]
    for value in values:
        assert format_value(value) == floatToGoString(value), value  # type: ignore[no-untyped-call]


def test_an_encoder_whose_text_is_not_lines_gets_the_families_whole(tmp_path: Path) -> None:
    _write(tmp_path / f"counter_{os.getpid()}.db", [("jobs", "jobs_total", {}, 2, 0)])

    def as_json(registry: Collector) -> bytes:
        return json.dumps(
            [[s.name, s.labels, s.value] for m in registry.collect() for s in m.samples]
        ).encode()

    for _ in range(2):
        body = encode(scrape_registry(str(tmp_path)), as_json)
        assert json.loads(body) == [["jobs_total", {}, 2.0]]


class _Users(Collector):
    def collect(self) -> list[Metric]:
        gauge = GaugeMetricFamily("concurrent_users", "Users", labels=())
        gauge.add_metric([], 4)
        return [gauge]


def test_gauges_computed_at_scrape_time_follow_the_files_families(tmp_path: Path) -> None:
    pid = os.getpid()
    ops = ("cache_operations", "cache_operations_total")
    _write(
        tmp_path / f"counter_{pid}.db",
        [
            (*ops, {"operation": "get", "result": "hit"}, 3, 0),
            (*ops, {"operation": "get", "result": "miss"}, 1, 0),
        ],
    )
    # A file value of gauges that are computed when the page is served is never shown.
    _write(
        tmp_path / f"gauge_livesum_{pid}.db",
        [
            ("concurrent_users", "concurrent_users", {}, 99, 0),
            ("cache_hit_rate", "cache_hit_rate", {}, 9, 0),
        ],
    )
    derived = (CACHE_HIT_RATE, LocalGauges(_Users(), frozenset({"concurrent_users"})))
    for encoder in ENCODERS:
        registry = scrape_registry(str(tmp_path), derived)
        body = encode(registry, encoder)
        assert body == encoder(scrape_registry(str(tmp_path), derived))
        if encoder is OPENMETRICS:
            found = page(body, encoder)
            assert found[("cache_hit_rate", frozenset())] == 0.75
            assert found[("concurrent_users", frozenset())] == 4
            assert body.endswith(b"# EOF\n")
            assert body.count(b"# EOF") == 1


def test_threads_scraping_at_once_see_the_same_page(tmp_path: Path) -> None:
    with workers(tmp_path, range(2)):
        pages: list[bytes] = []
        errors: list[BaseException] = []

        def scrape() -> None:
            try:
                for encoder in (TEXT, OPENMETRICS, TEXT):
                    body = encode(scrape_registry(str(tmp_path)), encoder)
                    if encoder is TEXT:
                        pages.append(body)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=scrape) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(pages) == 12
        assert len(set(pages)) == 1
        _equal(page(pages[0]), _theirs(tmp_path))


def test_exemplars_go_on_openmetrics_pages_with_the_other_lines_kept(tmp_path: Path) -> None:
    from flask_appmetrics.metrics.multiprocess.exemplar_file import ExemplarFile, bucket_key

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with workers(tmp_path, range(2)) as running:
        running[0].step()
        exemplars = ExemplarFile(str(tmp_path))
        try:
            bucket = bucket_key("latency_seconds_bucket", {"route": "/r0", "le": "1.0"})
            exemplars.write(bucket, trace, 0.75, 1700000000.5)
            for encoder in ENCODERS:
                for _ in range(2):  # lines made, then lines kept: both as the encoder writes
                    body = ours(tmp_path, encoder)
                if encoder in (TEXT, TEXT_DOTS):
                    assert b"trace_id" not in body  # the text format has no exemplars
                    continue
                # Written after the kept lines, not by encoding the family again.
                assert writes_exemplars_as(encoder, "trace_id")
                found = {
                    (s.name, s.labels.get("route"), s.labels.get("le")): s.exemplar
                    for family in parse_om(body.decode())
                    for s in family.samples
                    if s.exemplar is not None
                }
                assert list(found) == [("latency_seconds_bucket", "/r0", "1.0")]
                exemplar = found["latency_seconds_bucket", "/r0", "1.0"]
                assert exemplar.labels == {"trace_id": trace}
                assert exemplar.value == 0.75
                # The families without exemplars are on the page too, exactly (1 + 1, 2).
                assert page(body, encoder)[("jobs_total", frozenset({("queue", "a")}))] == 4.0
        finally:
            exemplars.close()
