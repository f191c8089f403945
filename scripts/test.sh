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
exec .venv/bin/python -m pytest "$@"
