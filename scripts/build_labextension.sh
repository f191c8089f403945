#!/usr/bin/env bash
# Build the JupyterLab front-end (jupyter_extension/, TypeScript) into nbflow/labextension/, the
# prebuilt extension that `pip install` ships, and record the sources it was built from (a test
# checks the record). Needs Node >= 18 and npm: installed from Debian when missing and run as root.
# Usage: bash scripts/build_labextension.sh [--test]   (--test also runs the TypeScript unit tests)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_node.sh
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
# JupyterLab's builder takes the shared-package versions from the installed JupyterLab's staging dir.
CORE=$("$PY" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))') || {
  echo "scripts: the build needs jupyterlab in $PY (bash scripts/test.sh --co -q makes .venv with it)" >&2; exit 1; }
cd jupyter_extension
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npx tsc
rm -rf ../nbflow/labextension
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$CORE" .
cp install.json ../nbflow/labextension/install.json
"$PY" stamp.py
if [ "${1:-}" = "--test" ]; then npx vitest run; fi
