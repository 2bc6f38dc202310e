"""``promtool check metrics`` on a real /metrics page: clean but for one kept name."""

from __future__ import annotations

from flask.testing import FlaskClient

from flask_appmetrics import FlaskMetrics
from tests.support.promtool import lint, needs_promtool

pytestmark = needs_promtool


def test_metrics_page_lints_clean_except_cache_items_count(
    client: FlaskClient, metrics: FlaskMetrics
) -> None:
    # Put a sample in every family so promtool sees each of them.
    for path in ("/items/1", "/boom", "/nope", "/metrics"):
        client.get(path)
    metrics.register_cache_layer("memory", items=lambda: 3)
    problems = lint(client.get("/metrics").data)
    # cache_items_count is the one name promtool flags (_count is a
    # reserved suffix); it stays because the user's dashboards use it.
    assert problems, "promtool should flag cache_items_count"
    assert all(line.startswith("cache_items_count") for line in problems), problems


def test_promtool_catches_a_bad_name() -> None:
    # Proves the check above can fail.
    body = b"# HELP bad_count x\n# TYPE bad_count counter\nbad_count 1\n"
    assert lint(body)
