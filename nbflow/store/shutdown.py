"""Set when the interpreter exits: background threads stop waiting for the store.

A daemon thread that is inside DuckDB while the interpreter finalizes aborts the process
("terminate called without an active exception"), so at exit the writer thread leaves the
store code at once and the main thread writes what is left.
"""

from __future__ import annotations

import threading

stopping = threading.Event()


def background_gives_up() -> bool:
    """True in a thread other than the main one once the interpreter is exiting."""
    return stopping.is_set() and threading.current_thread() is not threading.main_thread()
