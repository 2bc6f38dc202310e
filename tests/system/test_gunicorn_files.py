"""Files and streams served by real gunicorn (sync workers, multiprocess mode): every
request is counted exactly once, in-progress returns to 0, and gunicorn still receives its
own file wrapper (so it sends files with ``sendfile()``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gunicorn_server import Server, poll

pytestmark = pytest.mark.slow

STATIC = "/static/<path:filename>"
FILES = 20

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    static = tmp_path / "static"
    static.mkdir()
    for i in range(FILES):
        (static / f"file-{i}.css").write_text(f".c{i} {{ color: red; }}\n" * (200 + i))
    signals = tmp_path / "signals"
    signals.mkdir()
    multiproc = tmp_path / "multiproc"
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "TEST_STATIC_DIR": str(static),
        "TEST_SIGNAL_DIR": str(signals),
    }
    args = ("-c", "python:flask_appmetrics.gunicorn", "-w", "2")
    server = Server(tmp_path, "tests.support.hosts.gunicorn_files_app:app", *args, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def scrape(server: Server) -> Samples:
    response = server.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_static_files_downloads_and_streams_are_counted_exactly(
    server: Server, tmp_path: Path
) -> None:
    for i in range(FILES):
        response = server.get(f"/static/file-{i}.css")
        assert response.status_code == 200
        assert response.text.startswith(f".c{i} ")
    etag = server.get("/static/file-0.css").headers["ETag"]
    for _ in range(3):
        assert server.head("/static/file-1.css").status_code == 200
        assert server.get("/static/file-2.css", {"If-None-Match": etag}).status_code == 200
        assert server.get("/static/file-0.css", {"If-None-Match": etag}).status_code == 304
        partial = server.get("/static/file-3.css", {"Range": "bytes=0-9"})
        assert partial.status_code == 206
        assert len(partial.content) == 10
        assert server.get("/download/file-4.css").status_code == 200
        assert server.get("/report").status_code == 200
        assert server.get("/export").text.count("\n") == 100

    get = {"method": "GET"}
    expected = {
        ("GET", STATIC, "200"): FILES + 1 + 3,
        ("GET", STATIC, "304"): 3,
        ("GET", STATIC, "206"): 3,
        ("HEAD", STATIC, "200"): 3,
        ("GET", "/download/<name>", "200"): 3,
        ("GET", "/report", "200"): 3,
        ("GET", "/export", "200"): 3,
    }

    def counted(samples: Samples) -> dict[tuple[str, str, str], float]:
        return {
            key: value(
                samples, "http_requests_total", method=key[0], endpoint=key[1], status=key[2]
            )
            for key in expected
        }

    # A worker ends a request when it closes the body, after the client has it: wait
    # (bounded) until both workers have, then every figure must be exact.
    poll(lambda: counted(scrape(server)) == expected)
    samples = scrape(server)
    assert counted(samples) == expected
    for method, endpoint in {(key[0], key[1]) for key in expected}:
        labels = {"method": method, "endpoint": endpoint}
        count = sum(n for key, n in expected.items() if key[:2] == (method, endpoint))
        assert value(samples, "http_request_duration_seconds_count", **labels) == count
        assert value(samples, "http_requests_in_progress", **labels) == 0
    assert value(samples, "http_requests_in_progress", **get, endpoint="/metrics") == 1

    # gunicorn received its own file wrapper for every whole file it sent (file-0: 304s,
    # file-3: ranges, HEAD: no body).
    notes = [
        line.split()
        for log in (tmp_path / "signals").glob("bodies-*")
        for line in log.read_text().splitlines()
    ]
    partial_or_empty = {"/static/file-0.css", "/static/file-3.css"}
    files = [
        kind
        for method, path, kind in notes
        if method == "GET" and path not in partial_or_empty and path != "/export"
        if path.startswith(("/static/", "/download/", "/report"))
    ]
    assert len(files) == FILES - 2 + 3 + 3 + 3
    assert set(files) == {"file_wrapper"}
    assert {kind for _, path, kind in notes if path == "/export"} == {"other"}
    # Multiprocess mode is on: nothing to warn about.
    assert "multiprocess mode is off" not in server.log()
