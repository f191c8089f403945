"""The engine: flows, tasks, states, futures, task runners, retries, timeouts, caching."""
