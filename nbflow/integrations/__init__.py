"""Optional integrations with other tools; each module imports its tool only when used.

- `nbflow.integrations.mlflow` (`pip install 'nbflow[mlflow]'`): link task runs and
  mlflow runs both ways.
"""
