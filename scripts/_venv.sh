# Sourced by the other scripts: make ./.venv (Python >= 3.10) and install nbflow into it
# (a regular install, not editable: that is what installs the Jupyter config enabling the
# server extension) with the extras given as arguments. Works on a fresh Debian with only python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "scripts: python3 -m venv is missing; installing Debian's python3-venv" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      echo "scripts: '$PY -m venv' failed; install your distribution's venv package (Debian: sudo apt-get install python3-venv) and run again" >&2
      exit 1
    fi
  fi
fi
extras=$(IFS=,; echo "$*")
.venv/bin/python -m pip install --quiet --disable-pip-version-check ".${extras:+[$extras]}"
