"""Reference pages generated from the code, so that they cannot fall behind it.

``.. appmetrics-config::`` lists every ``APPMETRICS_*`` key of
:data:`flask_appmetrics.config.DEFAULTS`, in its order, as a ``py:data`` entry (so pages can
link to a key with ``:data:`APPMETRICS_QUOTA_RPM```) with its description from
:data:`flask_appmetrics.config.DESCRIPTIONS` and its default.

``.. appmetrics-metrics::`` lists every metric family the extension exports: the catalog's
prometheus_client metrics and the gauges computed at scrape time, with type, labels and
HELP text.
"""

from __future__ import annotations

import pprint
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import flask_appmetrics
from flask_appmetrics import config
from flask_appmetrics.metrics.catalog import (
    BODY_SIZE_SPECS,
    HEALTH_FAMILIES,
    QUEUE_TIME_SPECS,
    SCRAPE_TIME_FAMILIES,
    catalog_specs,
)

logger = logging.getLogger(__name__)

#: A default whose ``repr`` is longer than this is shown as a code block, not inline.
INLINE_DEFAULT = 100


def _named_constant(value: object) -> str | None:
    """The public name the default is exported under (``DEFAULT_GEMINI_PRICES``), if any."""
    for name in flask_appmetrics.__all__:
        if name.startswith("DEFAULT_") and getattr(flask_appmetrics, name) is value:
            return f"flask_appmetrics.{name}"
    return None


def _default_lines(value: Any) -> list[str]:
    text = repr(value)
    if len(text) <= INLINE_DEFAULT:
        return [f"Default: ``{text}``"]
    constant = _named_constant(value)
    intro = f"Default: :data:`{constant}`:" if constant else "Default:"
    block = pprint.pformat(value, width=88, sort_dicts=False).splitlines()
    return [intro, "", ".. code-block:: python", "", *(f"    {line}" for line in block)]


class ConfigReference(SphinxDirective):
    """Every configuration key, its description and its default."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        missing = sorted(set(config.DEFAULTS) - set(config.DESCRIPTIONS))
        if missing:
            # The test of DESCRIPTIONS says so too; a build must not pass quietly either.
            raise self.error(f"no description in DESCRIPTIONS for {', '.join(missing)}")
        source = self.get_source_info()[0]
        lines: list[str] = []
        for key, default in config.DEFAULTS.items():
            # Out of the page's table of contents: fifty keys would swamp the sidebar.
            lines += [f".. py:data:: {key}", "    :no-contents-entry:", ""]
            lines += [f"    {config.DESCRIPTIONS[key]}", ""]
            lines += [f"    {line}" if line else "" for line in _default_lines(default)]
            lines.append("")
        return self._parse(lines, source)

    def _parse(self, lines: list[str], source: str) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source=source), self.content_offset, container, match_titles=False
        )
        return list(container.children)


class MetricCatalog(SphinxDirective):
    """Every metric family: name, type, labels, HELP text, as a table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        rows: list[tuple[str, str, tuple[str, ...], str]] = [
            (spec.name, spec.kind, spec.labelnames, spec.documentation)
            for spec in catalog_specs(config.DEFAULT_BUCKETS)
        ]
        rows += [
            (spec.name, spec.kind, spec.labelnames, f"{spec.documentation} (opt-in: {key})")
            for specs, key in (
                (BODY_SIZE_SPECS, "APPMETRICS_BODY_SIZES"),
                (QUEUE_TIME_SPECS, "APPMETRICS_QUEUE_TIME"),
            )
            for spec in specs
        ]
        rows += [
            (family.name, "gauge", family.labelnames, family.documentation)
            for family in SCRAPE_TIME_FAMILIES
        ]
        rows += [
            (
                family.name,
                "stateset" if family.name == "app_health_status" else "gauge",
                family.labelnames,
                family.documentation,
            )
            for family in HEALTH_FAMILIES
        ]
        lines = [
            ".. list-table::",
            "    :header-rows: 1",
            "    :widths: 30 10 20 40",
            "",
            "    * - metric",
            "      - type",
            "      - labels",
            "      - meaning (the HELP text)",
        ]
        for name, kind, labels, documentation in rows:
            label_text = ", ".join(f"``{label}``" for label in labels) or "none"
            lines += [
                f"    * - ``{name}``",
                f"      - {kind}",
                f"      - {label_text}",
                f"      - {_escape(documentation)}",
            ]
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source=self.get_source_info()[0]),
            self.content_offset,
            container,
            match_titles=False,
        )
        return list(container.children)


def _escape(text: str) -> str:
    """HELP text as plain reST text: nothing in it is markup."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("_", "\\_")


def _check_own_reference(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> None:
    """Warn about a reference to a configuration key or a public name that goes nowhere.

    Sphinx says nothing about unresolved Python references unless ``nitpicky`` is on, which
    would also flag every type annotation of third-party classes; a misspelt key or a
    public name missing from the API page must fail the build all the same.
    """
    if node.get("refdomain") != "py":
        return
    target = str(node.get("reftarget", "")).lstrip("~.")
    name = target.removeprefix("flask_appmetrics.")
    if target.startswith("APPMETRICS_") or (
        name in flask_appmetrics.__all__ and node.get("py:module") in (None, "flask_appmetrics")
    ):
        logger.warning("reference to %r goes nowhere", target, location=node)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("appmetrics-config", ConfigReference)
    app.add_directive("appmetrics-metrics", MetricCatalog)
    app.connect("missing-reference", _check_own_reference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
