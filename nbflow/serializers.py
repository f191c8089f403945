"""Prefect-compatible import path: `from nbflow.serializers import JSONSerializer, PickleSerializer`."""

from nbflow.store.serializers import *  # noqa: F401,F403
from nbflow.store.serializers import __all__  # noqa: F401
