"""The dashboard: one HTML page at `<base_url>nbflow/` and its static assets, all in the package.

The page is a client of the REST API (it holds no logic the API lacks). It is served only to a
logged-in browser: Jupyter's own login, inside JupyterLab or standalone. Assets (the page's
script and styles, and plotly.js from the plotly package's bundled copy) need no network.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from jupyter_server.base.handlers import FileFindHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

STATIC = Path(__file__).with_name("static")


def plotly_js_dir() -> str:
    """The directory of the plotly package's own plotly.min.js."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("The plotly package is not installed; pip install plotly (an nbflow dependency).")
    return os.path.join(os.path.dirname(spec.origin), "package_data")


class DashboardHandler(ExtensionHandlerMixin, JupyterHandler):
    """The dashboard's page; an anonymous browser is sent to Jupyter's login page."""

    @web.authenticated
    def get(self, _: str = "") -> None:
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the page sends back on POST/PATCH/DELETE
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        page = page.replace("{{base_url}}", html.escape(base, quote=True))
        page = page.replace("{{api_url}}", html.escape(url_path_join(base, "nbflow/api/"), quote=True))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(page)


class DashboardStaticHandler(FileFindHandler):
    """The page's assets; its own look-up cache (FileFindHandler's is shared by every subclass)."""

    _static_paths: dict[str, str] = {}


def dashboard_handlers(base: str = "/") -> list[tuple]:
    """The URL specs of the page and its assets."""
    return [
        (url_path_join(base, "nbflow/?"), DashboardHandler),
        (url_path_join(base, "nbflow/static/(.*)"), DashboardStaticHandler,
         {"path": [str(STATIC), plotly_js_dir()]}),
    ]
