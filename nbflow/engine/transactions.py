"""Transactions as Prefect 3 has them: a group of task runs that commit together or roll back.

`with transaction():` groups the task runs called inside it. Each task run is a child
transaction that stages its result with the task's `on_commit`/`on_rollback` hooks; when the
block ends normally the group commits (commit hooks run), and when it raises, every child that
ran rolls back, newest first (rollback hooks run). A task run outside any transaction commits at
once. Only task runs with such hooks, or inside a transaction, pay for one.
"""

from __future__ import annotations

import copy
import enum
import inspect
import logging
from contextvars import ContextVar, Token
from typing import Any, Callable

logger = logging.getLogger("nbflow.transactions")
_NOT_SET = object()


class CommitMode(enum.Enum):
    EAGER = "EAGER"  # commit as soon as the block ends, whatever the parent does
    LAZY = "LAZY"  # leave it to the parent; commit at the end of the outermost block
    OFF = "OFF"  # never commit: roll back at the end unless committed by hand


class IsolationLevel(enum.Enum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class TransactionState(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


_current: ContextVar["Transaction | None"] = ContextVar("nbflow_transaction", default=None)


class Transaction:
    """One transaction: values shared by its code (`set`/`get`), children, and hooks."""

    def __init__(self, key: str | None = None, commit_mode: CommitMode | None = None,
                 isolation_level: IsolationLevel | None = None, store: Any = None, overwrite: bool = False,
                 write_on_commit: bool = True, logger: Any = None) -> None:
        self.key = key
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level
        self.store = store
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger or globals()["logger"]
        self.state = TransactionState.PENDING
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Callable[["Transaction"], Any]] = []
        self.on_rollback_hooks: list[Callable[["Transaction"], Any]] = []
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._parent: Transaction | None = None
        self._token: Token | None = None

    # -- shared values ----------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Keep a value for the code and hooks of this transaction (children see it too)."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A value set in this transaction or a parent's (a copy: use set() to change it)."""
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        if self._parent is not None:
            return self._parent.get(name, default)
        if default is not _NOT_SET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    # -- life -------------------------------------------------------------------------------

    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        return self.state is TransactionState.STAGED

    def is_pending(self) -> bool:
        return self.state is TransactionState.PENDING

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def get_parent(self) -> "Transaction | None":
        return self._parent

    def add_child(self, child: "Transaction") -> None:
        self.children.append(child)

    def stage(self, value: Any, on_rollback_hooks: list[Callable] | None = None,
              on_commit_hooks: list[Callable] | None = None) -> None:
        """Hold a value (a task run's result) and the hooks to run when the group commits or rolls back."""
        if self.state is not TransactionState.COMMITTED:
            self._staged_value = value
            self.on_rollback_hooks += list(on_rollback_hooks or ())
            self.on_commit_hooks += list(on_commit_hooks or ())
            self.state = TransactionState.STAGED

    def __enter__(self) -> "Transaction":
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        parent = _current.get()
        self._parent = parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
        self.state = TransactionState.ACTIVE
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if exc_type is not None:
            self.rollback()
            self._reset()
            return None  # the exception goes on
        if self.commit_mode is CommitMode.EAGER:
            self.commit()
        if self._parent is not None:
            self._reset()  # the parent commits or rolls back this one with itself
            return None
        if self.commit_mode is CommitMode.OFF:
            self.rollback()
        elif self.commit_mode is CommitMode.LAZY:
            self.commit()
        self._reset()
        return None

    def _reset(self) -> None:
        if self._parent is not None:
            self._parent.add_child(self)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if self._parent is not None and self.state is TransactionState.ROLLED_BACK:
            self._parent.rollback()

    def commit(self) -> bool:
        """Commit the children, then run this transaction's commit hooks; on an error, roll back."""
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for child in self.children:
                child.commit()
            for hook in self.on_commit_hooks:
                self._run_hook(hook, "commit")
            self.state = TransactionState.COMMITTED
            return True
        except Exception:
            self.logger.exception("An error was encountered while committing transaction %r", self.key)
            self.rollback()
            return False

    def rollback(self) -> bool:
        """Run the rollback hooks (newest first), then roll back the children."""
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self._run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                child.rollback()
            return True
        except Exception:
            self.logger.exception("An error was encountered while rolling back transaction %r", self.key)
            return False

    def _run_hook(self, hook: Callable, kind: str) -> None:
        name = getattr(hook, "__name__", repr(hook))
        self.logger.info("Running %s hook %r", kind, name)
        try:
            outcome = hook(self)
            if inspect.isawaitable(outcome):
                from nbflow.engine.calls import run_coro_sync

                run_coro_sync(outcome)
        except Exception:
            self.logger.error("An error was encountered while running %s hook %r", kind, name)
            raise
        self.logger.info("%s hook %r finished running successfully", kind.capitalize(), name)

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.name})"


def get_transaction() -> Transaction | None:
    """The transaction the calling code runs in, or None."""
    return _current.get()


def transaction(key: str | None = None, commit_mode: CommitMode | None = None,
                isolation_level: IsolationLevel | None = None, store: Any = None, overwrite: bool = False,
                write_on_commit: bool = True, logger: Any = None) -> Transaction:
    """`with transaction():` — the task runs inside commit together at the end, or roll back together
    when the block raises."""
    return Transaction(key=key, commit_mode=commit_mode, isolation_level=isolation_level, store=store,
                       overwrite=overwrite, write_on_commit=write_on_commit, logger=logger)


def current() -> Transaction | None:
    """The engine's fast check: the enclosing transaction, if any."""
    return _current.get()
