"""DaskTaskRunner: run task code on a Dask cluster, local or remote (`pip install nbflow[dask]`)."""

from __future__ import annotations

from typing import Any, Callable

from nbflow.engine.task_runners import TaskRunner, call_pickled, run_pickled_call
from nbflow.errors import NbflowError


class DaskTaskRunner(TaskRunner):
    """Runs the user code of task runs on Dask workers.

    With `address=` it connects to an existing scheduler (the way to go beyond one
    machine); without it, it starts a `distributed.LocalCluster(**cluster_kwargs)`
    for the flow run and closes it afterwards.
    """

    def __init__(self, address: str | None = None, cluster_kwargs: dict[str, Any] | None = None,
                 client_kwargs: dict[str, Any] | None = None, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.client: Any = None
        self._cluster: Any = None

    def duplicate(self) -> "DaskTaskRunner":
        return DaskTaskRunner(self.address, self.cluster_kwargs, self.client_kwargs, self.max_workers)

    def _driver_threads(self) -> int:
        # Driver threads only wait on Dask futures; enough to keep every worker busy.
        return self.max_workers or 64

    def start(self) -> "DaskTaskRunner":
        super().start()
        if self.client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise NbflowError(
                    "DaskTaskRunner needs dask.distributed, which is not installed. "
                    "Install it with: pip install 'nbflow[dask]'"
                ) from None
            if self.address is None:
                kwargs = {"processes": True, "dashboard_address": None, **self.cluster_kwargs}
                self._cluster = LocalCluster(**kwargs)
                self.client = Client(self._cluster, **self.client_kwargs)
            else:
                self.client = Client(self.address, **self.client_kwargs)
        return self

    def call(self, fn: Callable, args: tuple, kwargs: dict, is_async: bool,
             timeout: float | None) -> Any:
        if self.client is None:
            self.start()
        return call_pickled(lambda payload: self.client.submit(run_pickled_call, payload, pure=False),
                            fn, args, kwargs, is_async, timeout)

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _settings(self) -> tuple:
        return (self.address, repr(self.cluster_kwargs), repr(self.client_kwargs), self.max_workers)

    def __repr__(self) -> str:
        return f"DaskTaskRunner(address={self.address!r})"
