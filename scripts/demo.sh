#!/usr/bin/env bash
# One command from a fresh machine to the example backend on http://127.0.0.1:5000
# (/metrics, /api/health). Makes .venv, installs the package, starts the app.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
exec .venv/bin/python -m example_app "$@"
