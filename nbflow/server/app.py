"""The nbflow ExtensionApp: the REST run API inside Jupyter, or standalone (`nbflow server start`).

Loaded into a Jupyter server (enabled on install by jupyter_extension/nbflow.json) it
serves `<base_url>nbflow/api/...` behind Jupyter's own authentication. While it runs it
owns the store: it holds the DuckDB file, advertises itself in `$NBFLOW_HOME/server.json`
and puts NBFLOW_API_URL/NBFLOW_API_TOKEN into the environment of the kernels it starts,
so their run events come to it in batches.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Int

from nbflow.server.background import Background
from nbflow.server.handlers import NotFoundHandler
from nbflow.server.openapi import OpenApiHandler
from nbflow.server.pages import dashboard_handlers
from nbflow.server.routes import ROUTES
from nbflow.store import backend
from nbflow.store.server_info import ServerInfo, remove_runtime_file, write_runtime_file

API_PREFIX = "/nbflow/api"


class NbflowApp(ExtensionApp):
    """The nbflow server extension."""

    name = "nbflow"
    extension_url = "/nbflow/"
    load_other_extensions = False
    open_browser = False
    #: print the URL and token on start (the standalone `nbflow server start` sets it).
    announce = False
    worker = Bool(True, config=True, help="Run the due runs of the 'default' work pool in this server.")
    worker_limit = Int(4, config=True, help="How many runs the in-server worker executes at a time.")

    def initialize_settings(self) -> None:
        store = backend.own_store()
        store.hold()  # the server owns the file: no open and close per request
        atexit.register(store.release)  # also when stopped before the extension started
        self.settings["nbflow_store"] = store
        self.background = Background(store, worker=self.worker, worker_limit=self.worker_limit)

    def initialize_handlers(self) -> None:
        for route in ROUTES:
            self.handlers.append((url_path_join(API_PREFIX, route.pattern), route.handler, {"route": route}))
        self.handlers.append((url_path_join(API_PREFIX, "openapi.json"), OpenApiHandler))
        # Last: any other path under nbflow/api is a JSON 404, not Jupyter's HTML page or login redirect.
        self.handlers.append((API_PREFIX + r"(?:/.*)?", NotFoundHandler))
        self.handlers.extend(dashboard_handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Once the server listens: advertise it to other processes and to the kernels it starts."""
        url = serverapp.connection_url
        token = serverapp.identity_provider.token
        write_runtime_file(ServerInfo(url, token, os.getpid()))
        atexit.register(remove_runtime_file, os.getpid())  # also when stopped by a signal
        os.environ["NBFLOW_API_URL"] = url
        os.environ["NBFLOW_API_TOKEN"] = token
        self.log.info("nbflow: run API at %snbflow/api/ (store %s)", url, self.settings["nbflow_store"])
        self.background.start()
        if self.announce:
            print(f"nbflow server running at {url}\ntoken: {token}", flush=True)

    async def stop_extension(self) -> None:
        remove_runtime_file(os.getpid())
        self.background.stop()
        store = self.settings["nbflow_store"]
        from nbflow.store.buffer import recorder

        recorder.flush_quietly()
        store.release()
        backend.release_store()


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbflow.server.app", "app": NbflowApp}]
