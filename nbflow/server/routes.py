"""The REST routes under `nbflow/api/`: one table that the app and the OpenAPI document both read."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbflow.server import deployment_handlers as deployments
from nbflow.server import handlers

RUN_ID = r"(?P<run_id>[0-9a-fA-F]{4,64})"
REF = r"(?P<ref>[^/]+)"  # a deployment's id or name
NAME = r"(?P<{}>[A-Za-z0-9][A-Za-z0-9_\-]{{0,63}})"
_DEPLOYMENT_BODY = ("{\"name\", \"notebook\": PATH | \"entrypoint\": \"FILE.py:FLOW\", \"parameters\", "
                    "\"schedule\": {\"cron\", \"timezone\"} | {\"interval\"} | null, \"catch_up\", "
                    "\"timeout_seconds\", \"paused\", \"work_pool\", \"webhook\": {\"slug\", \"secret\"?, "
                    "\"parameters\"}, \"triggers\": [{\"deployment\", \"state\"}]}")


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
          query=("flow_name", "state", "deployment_id", "since", "until", "limit", "offset")),
    Route(f"flow_runs/{RUN_ID}", "/flow_runs/{id}", handlers.FlowRunHandler, {"get": "One flow run"}),
    Route(f"flow_runs/{RUN_ID}/task_runs", "/flow_runs/{id}/task_runs", handlers.TaskRunsHandler,
          {"get": "The task runs of a flow run"}, query=("limit", "offset")),
    Route(f"flow_runs/{RUN_ID}/logs", "/flow_runs/{id}/logs", handlers.LogsHandler,
          {"get": "The log lines of a flow run and its task runs, newest first"},
          query=("level", "limit", "offset")),
    Route(f"flow_runs/{RUN_ID}/states", "/flow_runs/{id}/states", deployments.RunStatesHandler,
          {"get": "The states a flow run went through, in order"}),
    Route(f"flow_runs/{RUN_ID}/graph", "/flow_runs/{id}/graph", deployments.RunGraphHandler,
          {"get": "The flow run's task graph, laid out (mapped tasks collapsed), with state colours"}),
    Route(f"flow_runs/{RUN_ID}/output_notebook", "/flow_runs/{id}/output_notebook",
          deployments.OutputNotebookHandler, {"get": "The executed notebook of a notebook run, as HTML"}),
    Route(f"flow_runs/{RUN_ID}/cancel", "/flow_runs/{id}/cancel", deployments.CancelHandler,
          {"post": "Cancel a deployment run (202 while its worker stops it)"}),
    Route(f"flow_runs/{RUN_ID}/state", "/flow_runs/{id}/state", deployments.RunStateHandler,
          {"post": "A worker reports the state of a run it claimed"},
          body={"post": "{\"state\", \"message\"?, \"output_notebook\"?, \"worker_id\"?}"}),
    Route("deployments", "/deployments", deployments.DeploymentsHandler,
          {"get": "Deployments, newest first", "post": "Create a deployment (409 if the name is taken)"},
          query=("limit", "offset"), body={"post": _DEPLOYMENT_BODY}),
    Route(f"deployments/{REF}/runs", "/deployments/{id}/runs", deployments.DeploymentRunsHandler,
          {"post": "Start a run of the deployment now; answers the new flow run"},
          body={"post": "{\"parameters\": {...}} (optional; merged over the deployment's)"}),
    Route(f"deployments/{REF}", "/deployments/{id}", deployments.DeploymentHandler,
          {"get": "One deployment, by id or name", "patch": "Change some fields of a deployment",
           "delete": "Delete a deployment (its runs stay recorded)"},
          body={"patch": "Any deployment fields but id"}),
    Route(f"webhooks/{NAME.format('slug')}", "/webhooks/{slug}", deployments.WebhookHandler,
          {"post": "Start a run of the deployment with this webhook; authenticated by the webhook's secret "
                   "(header X-Nbflow-Webhook-Secret), not the server's token"},
          public=True, body={"post": "Any JSON; the webhook maps its fields to parameters"}),
    Route("work_pools", "/work_pools", deployments.WorkPoolsHandler,
          {"get": "Work pools and their live workers", "post": "Create a work pool"},
          body={"post": "{\"name\", \"concurrency_limit\"?}"}),
    Route("workers", "/workers", deployments.WorkersHandler, {"get": "Workers, with their last heartbeat"}),
    Route(f"work_pools/{NAME.format('pool')}/claim", "/work_pools/{name}/claim", deployments.ClaimHandler,
          {"post": "A worker claims due runs of the pool (each run goes to one worker)"},
          body={"post": "{\"worker_id\", \"limit\"}"}),
    Route(f"workers/{NAME.format('worker_id')}/heartbeat", "/workers/{id}/heartbeat",
          deployments.HeartbeatHandler, {"post": "A worker is alive; answers the runs it must stop"},
          body={"post": "{\"work_pool\", \"run_ids\": [...]}"}),
    Route("events", "/events", handlers.EventsHandler, {"post": "Batched run events from clients"},
          body={"post": "Rows per table: {\"flow_runs\": [[...]], \"task_runs\": ..., \"state_history\": ..., "
                        "\"logs\": ..., \"cache_entries\": ...} in the column order of nbflow.store.records"}),
    Route("sql", "/sql", handlers.SqlHandler,
          {"post": "Read-only SQL over the run store; answers an Arrow IPC stream"},
          body={"post": "{\"sql\": \"select ...\", \"params\": [...]}"}),
)
