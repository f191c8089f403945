#!/usr/bin/env bash
# The main job: install nbflow into ./.venv, run the seed ETL flow on the embedded store
# (NBFLOW_HOME, default ~/.nbflow), and list the runs it recorded.
source "$(dirname "$0")/_venv.sh"
.venv/bin/python examples/etl.py
.venv/bin/nbflow flow-run ls --limit 5
