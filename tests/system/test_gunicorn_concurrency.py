"""Real gunicorn, three sync workers, prometheus_client's multiprocess mode, under concurrent
load: client threads spread requests over the workers while others scrape ``/metrics`` and
``/api/health``; every count is exact at the end, no deadlock, no exception."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gunicorn_server import Gunicorn
from tests.support.threads import Threads

REQUEST_THREADS = 8
JOIN_SECONDS = 120.0


@pytest.mark.slow
def test_counts_are_exact_across_gunicorn_workers_under_concurrent_load(tmp_path: Path) -> None:
    # Real gunicorn, three sync workers, prometheus_client's multiprocess mode: client
    # threads spread requests over the workers while others scrape both endpoints.

    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    server = Gunicorn(tmp_path, workers=3, multiproc=multiproc)
    try:
        stop = threading.Event()
        pids: set[int] = set()
        scrapes = {"metrics": 0, "health": 0}
        per_thread = 60

        def clients(k: int) -> None:
            with requests.Session() as session:
                for i in range(per_thread):
                    path = (
                        f"/items/{k * 1000 + i}"
                        if i % 2
                        else f"/cache/{'hit' if i % 4 else 'miss'}"
                    )
                    response = session.get(server.base + path, timeout=30)
                    assert response.status_code == 200
                    pids.add(response.json()["pid"])

        def scraper(path: str, key: str) -> None:
            while not stop.is_set():
                response = requests.get(server.base + path, timeout=30)
                assert response.status_code in {200, 503}
                if key == "metrics":
                    list(text_string_to_metric_families(response.text))
                scrapes[key] += 1

        workers, scrapers = Threads(), Threads()
        for k in range(REQUEST_THREADS):
            workers.start(functools.partial(clients, k), f"client-{k}")
        scrapers.start(functools.partial(scraper, "/metrics", "metrics"), "scrape-metrics")
        scrapers.start(functools.partial(scraper, "/api/health", "health"), "scrape-health")
        stuck = workers.join(JOIN_SECONDS)
        stop.set()
        stuck += scrapers.join(JOIN_SECONDS)
        assert not stuck, f"deadlocked: {stuck}"
        assert not workers.errors, workers.errors
        assert not scrapers.errors, scrapers.errors
        assert len(pids) > 1  # the load really was spread over workers

        samples = server.scrape()

        def value(name: str, **labels: str) -> float | None:
            return samples.get((name, frozenset(labels.items())))

        items = REQUEST_THREADS * (per_thread // 2)
        cache_calls = REQUEST_THREADS * (per_thread - per_thread // 2)
        get = {"method": "GET"}
        assert value(
            "http_requests_total", **get, endpoint="/items/<int:item_id>", status="200"
        ) == (items)
        assert value("http_requests_total", **get, endpoint="/cache/<result>", status="200") == (
            cache_calls
        )
        misses = REQUEST_THREADS * len(range(0, per_thread, 4))
        assert value("cache_operations_total", operation="get", result="miss") == misses
        assert value("cache_operations_total", operation="get", result="hit") == (
            cache_calls - misses
        )
        # Every earlier scrape counted, summed over whichever workers served them.
        assert (
            value("http_requests_total", **get, endpoint="/metrics", status="200")
            == (scrapes["metrics"])
        )
        assert value("http_requests_in_progress", **get, endpoint="/items/<int:item_id>") == 0
    finally:
        server.stop()
