#!/usr/bin/env bash
# Install nbflow with its test extras into ./.venv and run the whole test suite.
source "$(dirname "$0")/_venv.sh" test
exec .venv/bin/python -m pytest "$@"
