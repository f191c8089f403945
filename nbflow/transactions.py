"""Prefect-compatible import path: `from nbflow.transactions import transaction, get_transaction`."""

from nbflow.engine.transactions import (
    CommitMode, IsolationLevel, Transaction, TransactionState, get_transaction, transaction,
)

__all__ = ["CommitMode", "IsolationLevel", "Transaction", "TransactionState", "get_transaction", "transaction"]
