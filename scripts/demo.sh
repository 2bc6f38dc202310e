#!/usr/bin/env bash
# One command from a fresh clone to the example backend with something to look at: makes
# .venv, installs the package with its extras (progress shown), and starts the example app
# on http://127.0.0.1:5000 sending itself 300 requests in the background, so the status
# page and /metrics are not empty. Arguments go to `python -m example_app` (--port 8000,
# --host 0.0.0.0, --traffic 1000; --traffic 0 starts it idle).
# PYTHON picks the interpreter the virtualenv is made from (python3; 3.10 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

ensure_venv
venv_install "flask-appmetrics and the example's extras" -e '.[all]'

host=127.0.0.1 port=5000 traffic=yes
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --host) host=${args[i + 1]:-$host} ;;
    --host=*) host=${args[i]#--host=} ;;
    --port) port=${args[i + 1]:-$port} ;;
    --port=*) port=${args[i]#--port=} ;;
    --traffic | --traffic=*) traffic=given ;;
  esac
done
[ "$traffic" = yes ] && args+=(--traffic)
shown=$host
[ "$host" = 0.0.0.0 ] && shown=127.0.0.1

cat <<EOF

The example backend is starting. Point your browser at:

  http://$shown:$port/status       the status page (health, traffic, quota, caches)
  http://$shown:$port/metrics      the Prometheus page
  http://$shown:$port/api/health   the JSON health report

$([ "$traffic" = yes ] && echo "It sends itself 300 requests over the next minute or so, so the numbers move.")
Ctrl-C stops it.

EOF
exec .venv/bin/python -m example_app "${args[@]}"
