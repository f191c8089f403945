"""What the code of a run can ask about it, as `prefect.runtime`: `from nbflow.runtime import flow_run`.

`flow_run.id`, `flow_run.name`, `flow_run.parameters`, `task_run.id`, `deployment.name`, ...
Outside a run the ids are None, parameters {} and tags [] (as in Prefect).
"""

from nbflow.runtime import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
