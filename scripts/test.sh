#!/usr/bin/env bash
# Install nbflow with its test extras into ./.venv and run the whole test suite.
source "$(dirname "$0")/_venv.sh" test
# The browser tests drive Debian's chromium with Playwright (never a downloaded browser).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts: installing Debian's chromium for the browser tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts: chromium is not installed; the browser tests will be skipped (sudo apt-get install chromium)" >&2
  fi
fi
# The JupyterLab extension ships prebuilt (pip install enabled it above, no Node needed); its
# TypeScript unit tests need Node and the extension's npm packages: installed here when possible
# (Debian's nodejs as root, as for chromium), else tests/jupyter_extension skips them and says why.
if [ ! -d jupyter_extension/node_modules ] && (source scripts/_node.sh); then
  echo "scripts: installing the JupyterLab extension's npm packages for its unit tests" >&2
  (cd jupyter_extension && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "scripts: npm ci failed; the TypeScript unit tests will be skipped" >&2
fi
exec .venv/bin/python -m pytest "$@"
