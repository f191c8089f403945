"""Fixtures of the server tests (the helpers live in live_server.py: conftest is not importable)."""

from live_server import live_server  # noqa: F401 - the module-scoped fixture
