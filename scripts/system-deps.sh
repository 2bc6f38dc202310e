#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real: promtool and a Prometheus
# server (prometheus), redis-server, wrk (load benchmarks), chromium (the status page) and
# curl (the README's shell examples); and what building the virtualenv needs on a Debian
# Python: venv support (python3-venv), the Python headers (python3-dev) and a C compiler
# (build-essential), since the test extra's uwsgi package builds from source.
# Does nothing for packages already present; needs root (or sudo) only when one is missing.
set -euo pipefail

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  python3 - <<'PY' || need+=(python3-dev)
import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
PY
fi
[ ${#need[@]} -eq 0 ] && exit 0

# One name once, whatever asked for it twice.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Debian packages: ${need[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
