"""The `nbflow` command line: one module per noun (`flow_runs.py` is `nbflow flow-run ...`).

`main.py` builds the parser from those modules and turns errors into one line on
stderr and an exit code.
"""
