#!/usr/bin/env bash
# One command from a fresh machine to the whole test suite: system packages, a virtualenv
# in .venv with the package and its test extras, then ruff, mypy --strict and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k health).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh
# A virtualenv whose pip is missing (venv support was installed after a failed first try)
# is made again.
.venv/bin/python -m pip --version >/dev/null 2>&1 || python3 -m venv --clear .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,test]'

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
