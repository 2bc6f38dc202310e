"""Sphinx configuration of the flask-appmetrics documentation.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (a test does,
warnings as errors). The configuration reference and the metric catalog are generated from
the code by the local extension in ``_ext/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pallets_sphinx_themes import get_version

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

# Project --------------------------------------------------------------

project = "flask-appmetrics"
copyright = "flask-appmetrics developers"
author = "flask-appmetrics developers"
release, version = get_version("flask-appmetrics")

# General --------------------------------------------------------------

default_role = "code"
extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "pallets_sphinx_themes",
    "appmetrics_docs",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
toc_object_entries_show_parents = "hide"
exclude_patterns = ["_build"]
# The architecture page is Markdown (docs/architecture.md), read by myst-parser.
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3

# HTML -----------------------------------------------------------------

html_theme = "flask"
html_sidebars = {
    "index": ["localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
singlehtml_sidebars = {"index": ["localtoc.html"]}
# The version banner asks PyPI for the latest release from the reader's browser.
version_banner = False
html_title = f"flask-appmetrics Documentation ({version})"
html_show_sourcelink = False
