"""A small, bounded traffic generator for the example backend, so the metrics move.

``python -m example_app.traffic --url http://127.0.0.1:5000 --requests 200``

It sends a fixed number of requests (a mix of the API endpoints over a few topics, so the
cache both hits and misses, plus some forced failures, slow calls, quota refusals and
blocked answers from the offline Gemini stand-in, and streamed explanations) from a few
threads, then prints a summary line per status code. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TOPICS = ("photosynthesis", "black holes", "the french revolution", "neural networks", "jazz")


@dataclass(frozen=True)
class Call:
    """One request to send."""

    method: str
    path: str
    body: dict[str, str] | None = None


def plan(count: int, *, seed: int = 0, failure_share: float = 0.1) -> list[Call]:
    """*count* requests, the same for the same seed.

    :param failure_share: fraction of API calls that ask the offline LLM to fail
        (``?fail=1``); as many again ask for a slow answer (``?delay=``), and half as many
        for Google's answers a backend must handle: a quota refusal (``?scenario=429``), a
        blocked answer (``safety``) or a truncated one (``max-tokens``).
    """
    rng = random.Random(seed)
    calls: list[Call] = []
    for _ in range(count):
        topic = rng.choice(TOPICS)
        roll = rng.random()
        query = ""
        if roll < failure_share:
            query = "?fail=1"
        elif roll < 2 * failure_share:
            query = f"?delay={rng.choice((0.2, 0.5, 1.0))}"
        elif roll < 2.5 * failure_share:
            query = "?scenario=" + rng.choice(("429", "429", "safety", "max-tokens"))
        kind = rng.random()
        if kind < 0.3:
            calls.append(Call("POST", "/api/generate" + query, {"topic": topic}))
        elif kind < 0.45:
            calls.append(Call("POST", "/api/subtopics" + query, {"topic": topic}))
        elif kind < 0.6:
            sub = rng.choice(("history", "basics", "applications"))
            calls.append(
                Call("POST", "/api/explanations/stream" + query, {"topic": topic, "subtopic": sub})
            )
        elif kind < 0.75:
            sub = rng.choice(("history", "basics", "applications"))
            calls.append(
                Call("POST", "/api/explanations" + query, {"topic": topic, "subtopic": sub})
            )
        elif kind < 0.9:
            calls.append(Call("POST", "/api/images" + query, {"topic": topic}))
        elif kind < 0.95:
            calls.append(Call("GET", "/api/health"))
        else:
            calls.append(Call("GET", "/api/missing-page"))
    return calls


def send(base_url: str, call: Call, *, timeout: float = 10.0) -> int:
    """Send *call*; return the HTTP status (0 when no answer came)."""
    data = json.dumps(call.body).encode() if call.body is not None else None
    request = urllib.request.Request(
        base_url.rstrip("/") + call.path,
        data=data,
        method=call.method,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code
    except OSError:
        return 0


def run(
    base_url: str,
    count: int,
    *,
    concurrency: int = 4,
    seed: int = 0,
    pause: float = 0.0,
    deadline: float = 300.0,
) -> Counter[int]:
    """Send :func:`plan`'s requests from *concurrency* threads; return counts by status.

    Bounded twice: *count* requests at most, and nothing is sent after *deadline* seconds.

    :param pause: seconds each thread waits between its requests.
    """
    calls = plan(count, seed=seed)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline

    def worker(share: Sequence[Call]) -> None:
        for call in share:
            if time.monotonic() > stop_at:
                return
            status = send(base_url, call)
            with lock:
                statuses[status] += 1
            if pause:
                time.sleep(pause)

    threads = [
        threading.Thread(target=worker, args=(calls[i::concurrency],), daemon=True)
        for i in range(max(concurrency, 1))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=deadline + 15.0)
    return statuses


def wait_until_up(base_url: str, *, timeout: float = 30.0) -> bool:
    """Poll ``/metrics`` until the server answers, for at most *timeout* seconds."""
    stop_at = time.monotonic() + timeout
    while time.monotonic() < stop_at:
        if send(base_url, Call("GET", "/metrics"), timeout=2.0) == 200:
            return True
        time.sleep(0.2)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="the backend's root URL")
    parser.add_argument("--requests", type=int, default=200, help="how many requests to send")
    parser.add_argument("--concurrency", type=int, default=4, help="threads sending requests")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between requests")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not wait_until_up(args.url):
        logger.error("no answer from %s", args.url)
        return 1
    statuses = run(
        args.url, args.requests, concurrency=args.concurrency, seed=args.seed, pause=args.pause
    )
    for status, n in sorted(statuses.items()):
        logger.info("HTTP %s: %d", status or "no answer", n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
