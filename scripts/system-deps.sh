#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real: promtool and a Prometheus
# server (prometheus), redis-server, wrk (load benchmarks), chromium (the status page) and
# curl (the README's shell examples), and a C compiler: the test extra's uwsgi package builds
# from source (against the Python headers that come with the Python itself).
# Does nothing for packages already present; needs root (or sudo) only when one is missing.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
