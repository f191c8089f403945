"""The REST routes under `nbflow/api/`: one table that the app and the OpenAPI document both read."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbflow.server import handlers

RUN_ID = r"(?P<run_id>[0-9a-fA-F]{4,64})"


@dataclass(frozen=True)
class Route:
    """A URL pattern under nbflow/api/, its handler, and its documentation per method."""

    pattern: str  # regex, relative to nbflow/api/
    openapi_path: str  # the same path in OpenAPI's {param} form
    handler: type
    methods: dict[str, str]  # method -> summary
    public: bool = False  # answers without the server's token
    query: tuple[str, ...] = ()
    body: dict[str, str] = field(default_factory=dict)  # method -> description of the JSON body


ROUTES: tuple[Route, ...] = (
    Route("health", "/health", handlers.HealthHandler, {"get": "Whether the server is up"}, public=True),
    Route("flows", "/flows", handlers.FlowsHandler, {"get": "Flows that have run, with run counts"}),
    Route("flow_runs", "/flow_runs", handlers.FlowRunsHandler, {"get": "Flow runs, newest first"},
          query=("flow_name", "state", "limit", "offset")),
    Route(f"flow_runs/{RUN_ID}", "/flow_runs/{id}", handlers.FlowRunHandler, {"get": "One flow run"}),
    Route(f"flow_runs/{RUN_ID}/task_runs", "/flow_runs/{id}/task_runs", handlers.TaskRunsHandler,
          {"get": "The task runs of a flow run"}, query=("limit", "offset")),
    Route(f"flow_runs/{RUN_ID}/logs", "/flow_runs/{id}/logs", handlers.LogsHandler,
          {"get": "The log lines of a flow run and its task runs, newest first"}, query=("limit", "offset")),
    Route("events", "/events", handlers.EventsHandler, {"post": "Batched run events from clients"},
          body={"post": "Rows per table: {\"flow_runs\": [[...]], \"task_runs\": ..., \"state_history\": ..., "
                        "\"logs\": ..., \"cache_entries\": ...} in the column order of nbflow.store.records"}),
    Route("sql", "/sql", handlers.SqlHandler,
          {"post": "Read-only SQL over the run store; answers an Arrow IPC stream"},
          body={"post": "{\"sql\": \"select ...\", \"params\": [...]}"}),
)
