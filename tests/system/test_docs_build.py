"""The documentation site builds with Sphinx, warnings as errors, and its generated
references list everything the code has.

The build is the one a reader would run (``sphinx-build -W --keep-going -b html docs
<out>``), in a process of its own; the configuration reference and the metric catalog are
then read back from the HTML it wrote.
"""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flask_appmetrics.config import DEFAULT_BUCKETS, DEFAULTS, DESCRIPTIONS
from flask_appmetrics.metrics.catalog import (
    BODY_SIZE_SPECS,
    HEALTH_FAMILIES,
    QUEUE_TIME_SPECS,
    SCRAPE_TIME_FAMILIES,
    catalog_specs,
)
from tests.support.docs import DOCS

pytestmark = pytest.mark.slow


class _Page(HTMLParser):
    """The element ids and the text of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("sphinx", "pallets_sphinx_themes", "myst_parser"):
        pytest.importorskip(module, reason="the docs dependency group is not installed")
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    sources = [*DOCS.rglob("*.rst"), *DOCS.rglob("*.md")]
    for source in sources:
        relative = source.relative_to(DOCS)
        if "_build" in relative.parts:
            continue
        assert (site / relative.with_suffix(".html")).exists(), f"{relative} was not built"


def test_the_configuration_reference_lists_every_key(site: Path) -> None:
    page = _read(site / "config.html")
    # Sphinx's typographic quotes back to the source's plain ones.
    plain = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
    text = " ".join("".join(page.text).translate(plain).split())
    for key in DEFAULTS:
        assert key in page.ids, f"config.html has no entry for {key}"
        # The description as rendered: code marks removed, whitespace collapsed.
        assert DESCRIPTIONS[key].replace("`", "") in text, f"{key}'s description is missing"


def test_the_metric_catalog_lists_every_family(site: Path) -> None:
    text = " ".join(_read(site / "metrics.html").text)
    names = [spec.name for spec in catalog_specs(DEFAULT_BUCKETS)]
    names += [spec.name for spec in (*BODY_SIZE_SPECS, *QUEUE_TIME_SPECS)]
    names += [family.name for family in (*SCRAPE_TIME_FAMILIES, *HEALTH_FAMILIES)]
    for name in names:
        assert name in text, f"metrics.html lacks {name}"


def test_the_api_reference_documents_the_extension(site: Path) -> None:
    ids = _read(site / "api.html").ids
    assert {
        "flask_appmetrics.FlaskMetrics",
        "flask_appmetrics.FlaskMetrics.init_app",
        "flask_appmetrics.integrations.caching.instrument_cache",
        "flask_appmetrics.gunicorn.child_exit",
        "flask_appmetrics.signals.cache_event",
    } <= ids
