"""Deployments: notebooks and flows run on demand or on a schedule, executed with papermill."""
