#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: the system tools it can install
# (scripts/system-deps.sh: Debian or Ubuntu, as root or with sudo), a virtualenv in .venv
# with the package, its extras and the development groups, then ruff, mypy --strict and
# pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k health).
#
# A system tool that is missing makes the tests that need it skip, each with its reason;
# they are listed before the run. With TESTS_REQUIRE_SYSTEM_TOOLS=1 (CI) a skip fails the run.
# PYTHON picks the interpreter the virtualenv is made from (python3; 3.10 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

check_python || exit 1
PYTHON=$PYTHON scripts/system-deps.sh test
ensure_venv
venv_install "flask-appmetrics with its extras and the test, lint and docs tools" \
  -e '.[all]' --group test --group lint --group docs

# uWSGI builds from source: only where a C compiler and the Python headers are.
has_headers() {
  .venv/bin/python -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}
uwsgi=""
if [ -x .venv/bin/uwsgi ]; then
  :
elif command -v cc >/dev/null 2>&1 && has_headers; then
  venv_install "uWSGI (built from source)" --group uwsgi || uwsgi="it failed to build (see .venv/pip.log)"
else
  uwsgi="it needs a C compiler and the Python headers to build"
fi

# What will skip, and why, before anything runs.
skips=()
skip() { command -v "$1" >/dev/null 2>&1 || skips+=("$1 missing: $2"); }
skip promtool "tests/system/test_ops_rules.py, test_promtool.py, test_domain_promtool.py"
skip prometheus "tests/system/test_auth_prometheus.py, test_e2e_prometheus.py"
skip redis-server "the Redis tests (tests/system/test_redis*.py, test_host_apps_redis.py, ...)"
skip curl "the README shell examples that call curl (tests/system/test_readme_shell.py)"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || skips+=("chromium missing: tests/system/test_status_page_browser.py (scripts/system-deps.sh browser installs it)")
[ -z "$uwsgi" ] || skips+=("uwsgi not installed ($uwsgi): tests/system/test_uwsgi.py")
if [ ${#skips[@]} -gt 0 ]; then
  echo "== tests that will skip"
  printf '  %s\n' "${skips[@]}"
  if [ "${TESTS_REQUIRE_SYSTEM_TOOLS:-}" = 1 ]; then
    echo "  TESTS_REQUIRE_SYSTEM_TOOLS=1: each skip fails the run."
  fi
fi

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
