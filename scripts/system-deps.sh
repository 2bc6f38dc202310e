#!/usr/bin/env bash
# Installs the system packages a group of tasks uses, where it can: with apt-get (Debian,
# Ubuntu), as root or through sudo. Anywhere else it says what is missing and what it is
# for, and exits 0: the tests that need a missing tool skip with the reason.
#
#   scripts/system-deps.sh [test] [browser] [bench]      (no argument: test)
#
#   test     promtool and a Prometheus server (prometheus), redis-server, curl (the README's
#            shell examples), and what the virtualenv needs: venv support (python3-venv),
#            a C compiler and the Python headers (uWSGI builds from source)
#   browser  Chromium, for the one test that looks at the status page in a browser (CI
#            installs it; ~350 MB, so scripts/test.sh does not by default)
#   bench    wrk, for the load benchmarks in benchmarks/ (not a test dependency)
#
# PYTHON names the interpreter whose venv support and headers are checked (python3).
set -euo pipefail

python=${PYTHON:-python3}
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(test)

need=()     # Debian package names
missing=()  # "what: what it is for", for the message where nothing can be installed
want() {  # want COMMAND PACKAGE WHAT-FOR
  command -v "$1" >/dev/null 2>&1 && return 0
  need+=("$2")
  missing+=("$1 ($2): $3")
}

for group in "${groups[@]}"; do
  case $group in
    test)
      want promtool prometheus "the rule and metric-page checks"
      want prometheus prometheus "the end-to-end scrapes by a real Prometheus"
      want redis-server redis-server "the Redis-backed quota, health and cache tests"
      want curl curl "the README's shell examples"
      want cc build-essential "building uWSGI for its test"
      if command -v "$python" >/dev/null 2>&1; then
        if ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
          need+=(python3-venv)
          missing+=("$python -m venv (python3-venv): the virtualenv itself")
        fi
        if ! "$python" - <<'PY'
import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
PY
        then
          need+=(python3-dev)
          missing+=("Python.h (python3-dev): building uWSGI for its test")
        fi
      fi
      ;;
    browser)
      if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
        need+=(chromium)
        missing+=("chromium (chromium): the status page in a real browser")
      fi
      ;;
    bench) want wrk wrk "the load benchmarks (benchmarks/load.py)" ;;
    *) echo "system-deps.sh: unknown group '$group' (test, browser, bench)" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
# One name once, whatever asked for it twice.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

sudo=""
can=yes
if ! command -v apt-get >/dev/null 2>&1; then
  can="no apt-get here (not Debian or Ubuntu)"
elif [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    sudo="sudo"
  else
    can="not root, and sudo is not available without a terminal"
  fi
fi

if [ "$can" = yes ]; then
  echo "Installing system packages: ${need[*]} (apt-get)"
  if $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; then
    exit 0
  fi
  echo "apt-get could not install them all." >&2
fi
echo "Missing system tools (not installed: ${can/yes/apt-get failed}):"
printf '  - %s\n' "${missing[@]}"
echo "Install them with your package manager to run those tests (Debian names: ${need[*]})."
exit 0
