"""The service's business metrics, declared through flask-appmetrics' custom-metric API.

Declared per registry when an app is created (declaring again in the same registry returns
the same metrics), so the factory can run any number of times, on any registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask_appmetrics import CustomMetric, FlaskMetrics

#: ``source`` values of ``images_generated_total``: drawn from the LLM's description, or
#: a placeholder when the LLM was unavailable.
IMAGE_SOURCES = ("generated", "placeholder")
#: ``content_type`` values of ``content_quality_score``.
CONTENT_TYPES = ("subtopics", "explanation", "image")
#: Buckets of the 0-1 quality score.
QUALITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class BusinessMetrics:
    """The app's business counters and the quality histogram."""

    subtopics_total: CustomMetric
    explanations_total: CustomMetric
    images_total: CustomMetric
    quality_score: CustomMetric

    def subtopics(self, count: int) -> None:
        self.subtopics_total.inc(count)

    def explanation(self) -> None:
        self.explanations_total.inc()

    def image(self, source: str) -> None:
        self.images_total.labels(source=source).inc()

    def quality(self, content_type: str, score: float) -> None:
        self.quality_score.labels(content_type=content_type).observe(score)


def declare(metrics: FlaskMetrics) -> BusinessMetrics:
    """Declare the business metrics in *metrics*' registry (idempotent)."""
    return BusinessMetrics(
        subtopics_total=metrics.counter(
            "subtopics_generated_total", "Subtopics generated (each item of a list counts)"
        ),
        explanations_total=metrics.counter(
            "explanations_generated_total", "Explanations generated"
        ),
        images_total=metrics.counter(
            "images_generated_total",
            "Illustrations served, by source (generated from the LLM, or a placeholder)",
            ["source"],
            allowed={"source": IMAGE_SOURCES},
        ),
        quality_score=metrics.histogram(
            "content_quality_score",
            "Heuristic 0-1 quality score of generated content, by content type",
            ["content_type"],
            buckets=QUALITY_BUCKETS,
            allowed={"content_type": CONTENT_TYPES},
        ),
    )
