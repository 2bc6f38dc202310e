"""``promtool check metrics`` on a real /metrics page: clean but for the seed's one name."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from flask.testing import FlaskClient

from flask_appmetrics import FlaskMetrics

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/system-deps.sh installs it"
)


def lint(body: bytes) -> list[str]:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False, timeout=30
    )
    return [line for line in (result.stdout + result.stderr).decode().splitlines() if line]


def test_metrics_page_lints_clean_except_cache_items_count(
    client: FlaskClient, metrics: FlaskMetrics
) -> None:
    # Put a sample in every family so promtool sees each of them.
    for path in ("/items/1", "/boom", "/nope", "/metrics"):
        client.get(path)
    metrics.register_cache_layer("memory", items=lambda: 3)
    problems = lint(client.get("/metrics").data)
    # DESIGN.md: the seed's cache_items_count is the one name promtool flags (_count is a
    # reserved suffix); it stays because the user's dashboards use it.
    assert problems, "promtool should flag cache_items_count"
    assert all(line.startswith("cache_items_count") for line in problems), problems


def test_promtool_catches_a_bad_name() -> None:
    # Proves the check above can fail.
    body = b"# HELP bad_count x\n# TYPE bad_count counter\nbad_count 1\n"
    assert lint(body)
