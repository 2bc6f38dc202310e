#!/usr/bin/env bash
# One command from a fresh machine to the example backend on http://127.0.0.1:5000
# (/metrics, /api/health). Makes .venv, installs the package, starts the app.
set -euo pipefail
cd "$(dirname "$0")/.."

# A virtualenv whose pip is missing (venv support was installed after a failed first try)
# is made again.
.venv/bin/python -m pip --version >/dev/null 2>&1 || python3 -m venv --clear .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
exec .venv/bin/python -m example_app "$@"
