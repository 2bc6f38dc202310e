# Sourced by demo.sh and test.sh: the virtualenv in .venv, made and filled with progress
# shown, and filled again only when what it should hold changed.
#
#   ensure_venv                   .venv exists with a working pip (PYTHON picks the Python)
#   venv_install LABEL ARGS...    pip install ARGS into it, LABEL saying what for
#
# PYTHON (default python3) is the interpreter the virtualenv is made from: 3.10 or newer.

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

_say() { printf '%s\n' "$*" >&2; }

# The interpreter must exist, be 3.10+, and carry ensurepip (Debian and Ubuntu split it into
# python3-venv); each failure says how to get there.
check_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c '' >/dev/null 2>&1; then
    _say "No '$PYTHON' found. Install Python 3.10 or newer, or name one: PYTHON=python3.12 $0"
    return 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    _say "$("$PYTHON" --version 2>&1) is too old: flask-appmetrics needs Python 3.10 or newer."
    _say "Name another interpreter: PYTHON=python3.12 $0"
    return 1
  fi
  if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    local v
    v=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    _say "'$PYTHON -m venv' cannot make a virtualenv here: this Python has no ensurepip."
    _say "On Debian or Ubuntu: sudo apt-get install python3-venv (or python$v-venv),"
    _say "on Fedora: sudo dnf install python3 (venv is included); then run $0 again."
    return 1
  fi
}

# .venv made from $PYTHON, and made again when its pip is broken (venv support installed
# after a failed first try) or it was made from another Python version.
ensure_venv() {
  local want have
  want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  if [ -n "$have" ] && [ "$have" = "$want" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  check_python || exit 1
  _say "Creating the virtualenv $VENV (Python $want)..."
  "$PYTHON" -m venv --clear "$VENV"
}

# pip install "$@" into the venv, unless the same install already succeeded with this
# pyproject.toml. Shows one line of progress on a terminal (each package as pip collects
# it), the elapsed time at the end, and pip's log when it fails.
venv_install() {
  local label=$1
  shift
  local stamp="$VENV/.installed-$(printf '%s\n' "$*" | cat - pyproject.toml | cksum | cut -d' ' -f1)"
  [ -e "$stamp" ] && return 0
  local log="$VENV/pip.log" start=$SECONDS
  _say "Installing $label into $VENV (the first time takes a minute or two)..."
  # --group needs pip 25.1 or newer.
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'pip>=25.1' >"$log" 2>&1; then
    _say "Could not upgrade pip (is the package index reachable?):"
    tail -n 20 "$log" >&2
    return 1
  fi
  local n=0 status
  set +e
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 \
    | tee -a "$log" \
    | while IFS= read -r line; do
      case $line in
        Collecting* | "Building wheel"*)
          n=$((n + 1))
          [ -t 2 ] && printf '\r\033[K  [%d] %s' "$n" "${line:0:70}" >&2
          ;;
      esac
    done
  status=${PIPESTATUS[0]}
  set -e
  [ -t 2 ] && printf '\r\033[K' >&2
  if [ "$status" -ne 0 ]; then
    _say "pip install failed; the end of $log:"
    tail -n 30 "$log" >&2
    return "$status"
  fi
  touch "$stamp"
  _say "  done in $((SECONDS - start)) s."
}
