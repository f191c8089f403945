"""Retry delays: a number, a list per attempt, or a callable; with optional jitter."""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from nbflow.errors import TaskDefinitionError

RetryDelay = float | Sequence[float] | Callable[[int], Sequence[float]] | None


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays of backoff_factor * 2**n for attempt n, as Prefect's `exponential_backoff`."""
    if backoff_factor < 0:
        raise TaskDefinitionError(f"backoff_factor must be >= 0; got {backoff_factor!r}.")

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(retries)]

    return delays


#: Prefect's limit on per-attempt delays.
MAX_RETRY_DELAYS = 50


def retry_delay_setting(retries: int, retry_delay_seconds: RetryDelay) -> float | list[float]:
    """`retry_delay_seconds` as Prefect keeps it on the definition: a callable is called with the
    number of retries (its list kept), None becomes 0, anything else stays as given."""
    if callable(retry_delay_seconds):
        return retry_delay_seconds(retries)
    return 0 if retry_delay_seconds is None else retry_delay_seconds


def check_retry_options(owner: str, retries: Any, retry_delay_seconds: RetryDelay,
                        retry_jitter_factor: Any) -> tuple[Any, list[float] | None]:
    """Validate retry options at decoration time; return `retry_delay_seconds` as Prefect keeps
    it (`retry_delay_setting`) and the fixed delays the engine uses (None means 0 s)."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise TaskDefinitionError(
            f"{owner}: retries must be a whole number >= 0; got {retries!r}. "
            "Use retries=0 for no retries."
        )
    setting = retry_delay_setting(retries, retry_delay_seconds)
    return setting, _fixed_delays(owner, retry_delay_seconds, retry_jitter_factor, setting)


def _fixed_delays(owner: str, retry_delay_seconds: RetryDelay, retry_jitter_factor: Any,
                  delay: Any) -> list[float] | None:
    if retry_jitter_factor is not None and (
        not isinstance(retry_jitter_factor, (int, float)) or retry_jitter_factor < 0
    ):
        raise TaskDefinitionError(
            f"`retry_jitter_factor` must be >= 0. {owner}: retry_jitter_factor must be a number >= 0; "
            f"got {retry_jitter_factor!r}."
        )
    if retry_delay_seconds is None:
        return None
    if isinstance(delay, (int, float)) and not isinstance(delay, bool):
        delays = [float(delay)]
    elif isinstance(delay, (list, tuple)) and all(
        isinstance(d, (int, float)) and not isinstance(d, bool) for d in delay
    ):
        delays = [float(d) for d in delay]
    else:
        raise TaskDefinitionError(
            f"Invalid `retry_delay_seconds` provided; must be an int, float, list or callable. Received type "
            f"{type(delay)}. {owner}: retry_delay_seconds must be a number of seconds, a list of them, or a "
            f"callable such as exponential_backoff(10); got {delay!r}."
        )
    if len(delays) > MAX_RETRY_DELAYS:
        raise TaskDefinitionError(
            f"Can not configure more than {MAX_RETRY_DELAYS} retry delays per task. {owner}: the last delay "
            "is reused for every later retry, so a shorter list does the same.")
    if any(d < 0 for d in delays):
        raise TaskDefinitionError(f"{owner}: retry_delay_seconds must be >= 0; got {retry_delay_seconds!r}.")
    return delays


def retry_delay(delays: list[float] | None, attempt: int, jitter_factor: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1-based); lists repeat their last value."""
    if not delays:
        return 0.0
    delay = delays[min(attempt, len(delays)) - 1]
    if jitter_factor:
        delay = random.uniform(max(0.0, delay * (1 - jitter_factor)), delay * (1 + jitter_factor))
    return delay
