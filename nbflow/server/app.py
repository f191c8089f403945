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
import threading
import signal
from typing import Any
from urllib.parse import quote

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Int, List, Unicode, default

from nbflow import settings
from nbflow.deployments import paths
from nbflow.server.background import Background
from nbflow.server.background import logger as background_log
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
    # A trait, as ExtensionApp's (`jupyter lab --no-browser` sets ExtensionApp.open_browser, which a
    # plain attribute here would answer with a "not recognized" warning at every start).
    open_browser = Bool(False, config=True, help="Open the dashboard in a browser when started standalone.")
    #: launched by `nbflow server start`: print a login link on start, stop at the first Ctrl-C.
    standalone = False
    #: Ctrl-C came while the standalone server was starting: it stops once it can.
    interrupted = False
    worker = Bool(True, config=True, help="Run the due runs of the 'default' work pool in this server.")
    worker_limit = Int(4, config=True, help="How many runs the in-server worker executes at a time.")
    allowed_roots = List(Unicode(), config=True, help=(
        "Directories, besides the server's root_dir and NBFLOW_HOME (and NBFLOW_ALLOWED_ROOTS), whose "
        "notebooks and flow files deployments may run and whose output notebooks the dashboard shows."))

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return False

    def initialize_settings(self) -> None:
        store = backend.own_store()
        # The server owns the file: no open and close per request. Its SQL reads no other file
        # but the results (Parquet) under NBFLOW_HOME/results.
        store.hold(readable=(settings.home() / "results",))
        # Also when stopped before the extension started, or by a KeyboardInterrupt that skips
        # stop_extension: release (interrupting running queries) before exit joins the threads
        # that run them (concurrent.futures joins its threads in the same hook, registered earlier).
        getattr(threading, "_register_atexit", atexit.register)(store.release)
        self.settings["nbflow_store"] = store
        paths.configure(self.serverapp.root_dir, self.allowed_roots)
        if any(root.parent == root for root in paths.allowed_roots()):
            self.log.warning("nbflow: an allowed root is the filesystem's root %s, so deployments may run any "
                             "notebook or flow file on this machine; start the server in your project's "
                             "directory instead.", os.path.abspath(os.sep))
        self.background = Background(store, worker=self.worker, worker_limit=self.worker_limit)
        self._stopping = False
        self._stop_claiming_when_the_server_stops()

    def initialize_handlers(self) -> None:
        for route in ROUTES:
            self.handlers.append((url_path_join(API_PREFIX, route.pattern), route.handler, {"route": route}))
        self.handlers.append((url_path_join(API_PREFIX, "openapi.json"), OpenApiHandler))
        # Last: any other path under nbflow/api is a JSON 404, not Jupyter's HTML page or login redirect.
        self.handlers.append((API_PREFIX + r"(?:/.*)?", NotFoundHandler))
        self.handlers.extend(dashboard_handlers())

    def _stop_claiming_when_the_server_stops(self) -> None:
        """No deployment run is claimed or started once the server begins to stop, whatever stops it
        (SIGTERM, a confirmed Ctrl-C, POST api/shutdown): Jupyter only calls stop_extension later."""
        serverapp = self.serverapp
        stop = serverapp.stop

        def stop_and_stop_claiming(*args: Any, **kwargs: Any) -> Any:  # may run in a signal handler
            if not self._stopping:
                self._stopping = True
                self.background.stop_claiming()
                background_log.info("nbflow: the server is stopping: no flow run is claimed or started from now on")
            return stop(*args, **kwargs)

        serverapp.stop = stop_and_stop_claiming
        if self.standalone:
            # Ctrl-C stops at once, like SIGTERM. Without a terminal Jupyter leaves SIGINT to Python, whose
            # KeyboardInterrupt lands wherever the main thread is, e.g. in a DuckDB call that turns it into
            # an error and carries on (the server kept running); on a terminal Jupyter asks to confirm.
            def stop_on_ctrl_c(signum: int, frame: Any) -> None:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once
                serverapp._signal_stop(signum, frame)

            if self.interrupted:  # Ctrl-C while it started (a second one already ends the process)
                serverapp._signal_stop(signal.SIGINT, None)
            else:
                signal.signal(signal.SIGINT, stop_on_ctrl_c)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Once the server listens: advertise it to other processes and to the kernels it starts."""
        if self._stopping:  # stopped (e.g. Ctrl-C) before the event loop ran: start nothing
            return
        url = serverapp.connection_url
        token = serverapp.identity_provider.token
        write_runtime_file(ServerInfo(url, token, os.getpid()))
        atexit.register(remove_runtime_file, os.getpid())  # also when stopped by a signal
        os.environ["NBFLOW_API_URL"] = url
        os.environ["NBFLOW_API_TOKEN"] = token
        self.log.info("nbflow: run API at %snbflow/api/ (store %s)", url, self.settings["nbflow_store"])
        self.background.start()
        if self.standalone:
            print(f"nbflow server running at {url} (store {self.settings['nbflow_store'].path})\n"
                  f"Open the dashboard (this link logs you in): {url}nbflow/?token={quote(token, safe='')}\n"
                  f"Clients use NBFLOW_API_URL={url} NBFLOW_API_TOKEN={token}; Ctrl-C stops the server.",
                  flush=True)

    async def stop_extension(self) -> None:
        remove_runtime_file(os.getpid())
        self._stopping = True
        self.background.stop()
        paths.reset()
        store = self.settings["nbflow_store"]
        from nbflow.store.buffer import recorder

        recorder.flush_quietly()
        store.release()
        backend.release_store()


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbflow.server.app", "app": NbflowApp}]
