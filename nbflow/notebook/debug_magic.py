"""`%nbflow debug RUN_ID`: put a failed task run's inputs back into the kernel, show its failure,
hand its cell back for editing, and with `--pdb` re-run it under the post-mortem debugger."""

from __future__ import annotations

from typing import Any

from nbflow.debugging.failed_runs import debug
from nbflow.debugging.report import describe
from nbflow.debugging.rerun import post_mortem, task_call


def debug_in_kernel(shell: Any, run_id: str, task_name: str | None = None, *, pdb: bool = False) -> None:
    inputs = debug(run_id, task_name)
    manifest = inputs.manifest
    shell.user_ns.update(inputs)
    print(describe(inputs))
    print()
    print(manifest["traceback"].rstrip())
    if manifest["kind"] == "cell":
        cell = f"{manifest.get('header') or '%%task'}\n{manifest['source'] or ''}".rstrip()
        shell.set_next_input(cell, replace=False)
        print("\nThe failing cell is in the next input: fix it and run it.")
    if not pdb:
        return
    print(f"\nRe-running {manifest['task_name']!r} with the kept inputs...", flush=True)
    if manifest["kind"] == "cell":
        code = shell.transform_cell(manifest["source"] or "")
        compiled = compile(code, shell.compile.cache(code), "exec")
        post_mortem(lambda: exec(compiled, shell.user_ns), shell)  # noqa: S102 - the user's own cell
    else:
        fn, args, kwargs = task_call(manifest, inputs)
        post_mortem(lambda: fn(*args, **kwargs), shell)
