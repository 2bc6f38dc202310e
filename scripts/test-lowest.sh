#!/usr/bin/env bash
# The test suite on the lowest versions pyproject.toml allows: each direct dependency and
# extra declared as "name>=X" is installed as "name==X" (their own dependencies as pip
# resolves them), on Python 3.10, the oldest supported, where one is installed (else on
# PYTHON or python3, said so). In .venv-lowest; CI runs it after scripts/test.sh.
# The system tests (real servers, browsers) run in the main suite only: here what is checked
# is that the package and its tests work with those versions. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do
    if "$candidate" -c '' >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  echo "No Python 3.10 found: the lowest versions run on $(python3 --version 2>&1)."
fi
VENV=.venv-lowest
. scripts/_venv.sh

# "name>=X" of [project] dependencies and optional-dependencies, as "name==X".
mapfile -t pins < <("$PYTHON" - <<'PY'
import re
text = open("pyproject.toml").read()
project = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
extras = text.split("\n[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
lowest = {}
for spec in re.findall(r'"([^"]+)"', project.split("dependencies = [", 1)[1].split("]\n", 1)[0] + extras):
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z,]+\])?>=([0-9][0-9.]*)", spec)
    if m and m.group(1) != "flask-appmetrics":
        name = m.group(1).lower().replace("_", "-")
        lowest[name] = max(lowest.get(name, m.group(3)), m.group(3), key=lambda v: tuple(map(int, v.split("."))))
for name, version in sorted(lowest.items()):
    print(f"{name}=={version}")
PY
)
echo "== lowest versions: ${pins[*]}"
ensure_venv
venv_install "the package at its lowest declared versions" -e '.[all]' --group test "${pins[@]}"
names=$(printf '%s|' "${pins[@]%%==*}")
echo "== installed: $("$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE "^(${names%|}) " | tr -s ' ' | paste -sd ',' | sed 's/,/, /g')"
echo "== pytest ($("$VENV/bin/python" --version), lowest versions)"
TESTS_REQUIRE_SYSTEM_TOOLS= exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --ignore=tests/system "$@"
