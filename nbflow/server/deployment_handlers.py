"""Request handlers for deployments, their runs, webhooks, work pools and workers."""

from __future__ import annotations

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

import datetime as dt

from nbflow.deployments import schedules, service, targets
from nbflow.server import run_views, webhook_limits
from nbflow.server.errors import bad_request
from nbflow.server.handlers import NbflowHandler, Reply, api
from nbflow.server.runs_api import page


class DeploymentsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self) -> list:
        limit, offset = page(self.arguments())
        return service.list_deployments(self.store, limit, offset)

    @web.authenticated
    @api
    def post(self) -> dict:
        created = service.create_deployment(self.store, self.json_body())
        self.set_status(201)
        return created


class DeploymentHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, ref: str) -> dict:
        return service.get_deployment(self.store, ref)

    @web.authenticated
    @api
    def patch(self, ref: str) -> dict:
        return service.update_deployment(self.store, ref, self.json_body())

    @web.authenticated
    @api
    def delete(self, ref: str) -> dict:
        return service.delete_deployment(self.store, ref)


class DeploymentRunsHandler(NbflowHandler):
    @web.authenticated
    @api
    def post(self, ref: str) -> dict:
        body = self.json_object()
        run = service.create_run(self.store, ref, body.get("parameters"))
        self.set_status(201)
        return run


class CancelHandler(NbflowHandler):
    @web.authenticated
    @api
    def post(self, run_id: str) -> dict:
        run = service.cancel_run(self.store, run_id)
        if run["state"] not in ("Cancelled",):
            self.set_status(202)  # its worker stops it and records Cancelled
        return run


class RunStateHandler(NbflowHandler):
    """A worker reports the state of a run it claimed."""

    @web.authenticated
    @api
    def post(self, run_id: str) -> dict:
        body = self.json_object()
        return service.set_run_state(self.store, run_id, body["state"], body.get("message"),
                                     body.get("output_notebook"), body.get("worker_id"))


class WebhookHandler(NbflowHandler):
    """Outside services start a deployment's run with the webhook's own secret, not the server's token.

    Wrong secrets are limited per slug and client address (nbflow.server.webhook_limits): 429 with
    Retry-After, decided before the body is read; the secret is checked before the body is parsed.
    """

    def check_xsrf_cookie(self) -> None:
        """No browser cookie authenticates this route: the secret does, so XSRF does not apply."""

    def admit(self) -> None:
        self._attempt: webhook_limits.Attempt | None = None
        if self._refusal is None:  # a body over the limit is refused (413) without looking at its secret
            self._attempt = webhook_limits.limiter.attempt(self.path_kwargs["slug"], self.request.remote_ip or "")

    @allow_unauthenticated
    @api
    def post(self, slug: str) -> dict:
        secret = self.request.headers.get("X-Nbflow-Webhook-Secret") or self.get_query_argument("secret", None)
        deployment = service.webhook_deployment(self.store, slug, secret)  # 403 alike for a wrong secret and slug
        if self._attempt is not None:
            webhook_limits.limiter.succeeded(self._attempt)
        body = self.json_body() if self.request.body else {}
        run = service.start_webhook_run(self.store, deployment, body)
        self.set_status(201)
        return run


class WorkPoolsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self) -> list:
        return service.list_work_pools(self.store)

    @web.authenticated
    @api
    def post(self) -> dict:
        body = self.json_object()
        pool = service.create_work_pool(self.store, body["name"], body.get("concurrency_limit"))
        self.set_status(201)
        return pool


class ClaimHandler(NbflowHandler):
    @web.authenticated
    @api
    def post(self, pool: str) -> list:
        body = self.json_object()
        return service.claim_runs(self.store, pool, body["worker_id"], body.get("limit", 1))


class HeartbeatHandler(NbflowHandler):
    @web.authenticated
    @api
    def post(self, worker_id: str) -> dict:
        body = self.json_object()
        return service.heartbeat(self.store, worker_id, body.get("work_pool") or "default", body.get("run_ids") or [],
                                 host=body.get("host"), pid=body.get("pid"))


class RunStatesHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> list:
        return run_views.run_states(self.store, run_id)


class RunGraphHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> dict:
        return run_views.run_graph(self.store, run_id)


_SANDBOX = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
            "frame-ancestors 'self'")


class OutputNotebookHandler(NbflowHandler):
    """The executed notebook as HTML, for an iframe: sandboxed, no scripts, nothing fetched; or, with
    `format=ipynb`, the notebook's own JSON (JupyterLab opens it as a read-only copy)."""

    @web.authenticated
    @api
    def get(self, run_id: str) -> Reply | dict:
        kind = self.get_argument("format", "html")
        if kind == "ipynb":
            return run_views.output_notebook_json(self.store, run_id)
        if kind != "html":
            raise bad_request(f"format must be html or ipynb; got {kind!r}.", "format")
        page = run_views.output_notebook_html(self.store, run_id)
        return Reply(page, "text/html; charset=utf-8", (("Content-Security-Policy", _SANDBOX),))


class TargetHandler(NbflowHandler):
    """What a file can be deployed as (a deploy form's first question)."""

    @web.authenticated
    @api
    def get(self) -> dict:
        return targets.describe_target(self.get_argument("path", ""))


class SchedulePreviewHandler(NbflowHandler):
    """A schedule in words and its next fire times, before a deployment is saved with it."""

    @web.authenticated
    @api(threads=None)
    def get(self) -> dict:
        arguments = self.arguments()
        spec: dict = {}
        if arguments.get("cron") is not None:
            spec["cron"] = arguments["cron"]
        if arguments.get("timezone"):
            spec["timezone"] = arguments["timezone"]
        if arguments.get("interval") is not None:
            raw = arguments["interval"]
            try:
                spec["interval"] = int(raw)
            except ValueError:
                raise bad_request(f"interval must be a whole number of seconds; got {raw!r}.",
                                  "schedule.interval") from None
        limit, _ = page(arguments, default_limit=3)
        return schedules.preview(spec, dt.datetime.now(dt.timezone.utc), min(limit, 10))


class WorkersHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self) -> list:
        return run_views.list_workers(self.store)
