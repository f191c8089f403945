"""The REST routes under `nbflow/api/`: one table that the app and the OpenAPI document both read."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbflow.server import bodies, debug_handlers, handlers
from nbflow.server import deployment_handlers as deployments
from nbflow.server.handlers import NO_BODY_LIMIT
from nbflow.store.api_store import EVENTS_BODY_LIMIT
from nbflow.store.debug_uploads import CHUNK_BYTES
from nbflow.store.records import TABLES

RUN_ID = r"(?P<run_id>[0-9a-fA-F]{4,64})"
TASK_RUN_ID = r"(?P<task_run_id>[0-9a-fA-F]{4,64})"
FILE_NAME = r"(?P<name>[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127})"
REF = r"(?P<ref>[^/]+)"  # a deployment's id or name
NAME = r"(?P<{}>[A-Za-z0-9][A-Za-z0-9_\-]{{0,63}})"
KIB = 1024
MIB = 1024 * KIB
#: the body limit of the routes that take a small JSON object (deployments, webhooks, sql, worker calls).
SMALL_BODY = 1 * MIB


@dataclass(frozen=True)
class Route:
    """A URL pattern under nbflow/api/, its handler, and its documentation per method."""

    pattern: str  # regex, relative to nbflow/api/
    openapi_path: str  # the same path in OpenAPI's {param} form
    handler: type
    methods: dict[str, str]  # method -> summary
    public: bool = False  # answers without the server's token
    query: tuple[str, ...] = ()
    body: dict[str, dict] = field(default_factory=dict)  # method -> JSON schema of its body (nbflow.server.bodies)
    #: the largest body in bytes, refused with 413 before it is read or parsed.
    max_body: int = NO_BODY_LIMIT
    #: method -> its success status when not 200 (201 Created, 202 Accepted).
    status: dict[str, tuple[int, ...]] = field(default_factory=dict)


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
          deployments.OutputNotebookHandler,
          {"get": "The executed notebook of a notebook run, as HTML (or its nbformat JSON with format=ipynb)"},
          query=("format",)),
    Route(f"flow_runs/{RUN_ID}/debug", "/flow_runs/{id}/debug", debug_handlers.DebugHandler,
          {"get": "What a failed run's first failed task run (or the task run with this id) kept for debugging: "
                  "the failure, its code, the values kept and those skipped"}, query=("task_name",)),
    Route(f"flow_runs/{RUN_ID}/debug_notebook", "/flow_runs/{id}/debug_notebook", debug_handlers.DebugNotebookHandler,
          {"get": "A notebook (.ipynb download) that restores a failed task run's inputs and holds its failing code"},
          query=("task_name",)),
    Route(f"flow_runs/{RUN_ID}/debug_files", "/flow_runs/{id}/debug_files", debug_handlers.DebugFilesHandler,
          {"get": "The debug data kept for a run: each failed task run's manifest and files (name, bytes, sha256), "
                  "for a client with another NBFLOW_HOME to download",
           "post": "A worker with another NBFLOW_HOME offers a failed task run's debug data ({id}: its outermost flow "
                   "run); answers the bytes still missing, to send with PUT; complete once the server keeps it all"},
          body={"post": bodies.DEBUG_OFFER}, max_body=16 * MIB),
    Route(f"flow_runs/{RUN_ID}/debug_files/{TASK_RUN_ID}/{FILE_NAME}", "/flow_runs/{id}/debug_files/{task_run_id}/{name}",
          debug_handlers.DebugFileHandler,
          {"get": "One file of a failed task run's kept debug data",
           "put": "A chunk of an offered file, starting at byte `position` (where the server's copy ends); the last "
                  "chunk of the last file makes the server keep the data; answers what is still missing"},
          query=("position",), body={"put": bodies.RAW_BYTES}, max_body=CHUNK_BYTES),
    Route(f"flow_runs/{RUN_ID}/retry", "/flow_runs/{id}/retry", debug_handlers.RetryHandler,
          {"post": "Run a deployment run's deployment again with its parameters; with from_failed, resume at its "
                   "failed task run, the kept inputs restored instead of recomputed (409 if none were kept)"},
          body={"post": bodies.RETRY}, max_body=SMALL_BODY, status={"post": (201,)}),
    Route(f"flow_runs/{RUN_ID}/cancel", "/flow_runs/{id}/cancel", deployments.CancelHandler,
          {"post": "Cancel a deployment run (202 while its worker stops it)"}, status={"post": (200, 202)}),
    Route(f"flow_runs/{RUN_ID}/state", "/flow_runs/{id}/state", deployments.RunStateHandler,
          {"post": "A worker reports the state of a run it claimed"},
          body={"post": bodies.RUN_STATE}, max_body=SMALL_BODY),
    Route("deployments", "/deployments", deployments.DeploymentsHandler,
          {"get": "Deployments, newest first", "post": "Create a deployment (409 if the name is taken)"},
          query=("limit", "offset"), body={"post": bodies.DEPLOYMENT}, max_body=SMALL_BODY, status={"post": (201,)}),
    Route(f"deployments/{REF}/runs", "/deployments/{id}/runs", deployments.DeploymentRunsHandler,
          {"post": "Start a run of the deployment now; answers the new flow run"},
          body={"post": bodies.RUN}, max_body=SMALL_BODY, status={"post": (201,)}),
    Route(f"deployments/{REF}", "/deployments/{id}", deployments.DeploymentHandler,
          {"get": "One deployment, by id or name", "patch": "Change some fields of a deployment",
           "delete": "Delete a deployment (its runs stay recorded)"},
          body={"patch": bodies.DEPLOYMENT_PATCH}, max_body=SMALL_BODY),
    Route(f"webhooks/{NAME.format('slug')}", "/webhooks/{slug}", deployments.WebhookHandler,
          {"post": "Start a run of the deployment with this webhook; authenticated by the webhook's secret "
                   "(header X-Nbflow-Webhook-Secret), not the server's token"},
          public=True, body={"post": bodies.WEBHOOK}, max_body=SMALL_BODY, status={"post": (201,)}),
    Route("targets", "/targets", deployments.TargetHandler,
          {"get": "What a file can be deployed as: a notebook and its parameter schema, or the flows of a .py "
                  "file and theirs"}, query=("path",)),
    Route("schedule_preview", "/schedule_preview", deployments.SchedulePreviewHandler,
          {"get": "A schedule (cron and timezone, or interval) checked, in words, with its next fire times"},
          query=("cron", "timezone", "interval", "limit")),
    Route("work_pools", "/work_pools", deployments.WorkPoolsHandler,
          {"get": "Work pools and their live workers", "post": "Create a work pool"},
          body={"post": bodies.WORK_POOL}, max_body=SMALL_BODY, status={"post": (201,)}),
    Route("workers", "/workers", deployments.WorkersHandler, {"get": "Workers, with their last heartbeat"}),
    Route(f"work_pools/{NAME.format('pool')}/claim", "/work_pools/{name}/claim", deployments.ClaimHandler,
          {"post": "A worker claims due runs of the pool (each run goes to one worker)"},
          body={"post": bodies.CLAIM}, max_body=SMALL_BODY),
    Route(f"workers/{NAME.format('worker_id')}/heartbeat", "/workers/{id}/heartbeat",
          deployments.HeartbeatHandler, {"post": "A worker is alive; answers the runs it must stop"},
          body={"post": bodies.HEARTBEAT}, max_body=SMALL_BODY),
    Route("events", "/events", handlers.EventsHandler, {"post": "Batched run events from clients"},
          body={"post": bodies.events_schema(TABLES)}, max_body=EVENTS_BODY_LIMIT),
    Route("sql", "/sql", handlers.SqlHandler,
          {"post": "Read-only SQL over the run store; answers an Arrow IPC stream"},
          body={"post": bodies.SQL}, max_body=SMALL_BODY),
)
