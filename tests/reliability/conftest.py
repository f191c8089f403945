"""Fault injection with real processes, files and servers: kill -9, damaged files, bad bodies.

Each test is bounded in time and stops every process it starts. The server helpers live in
tests/server/live_server.py; this folder imports them from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from live_server import live_server  # noqa: E402,F401 - the module-scoped fixture
