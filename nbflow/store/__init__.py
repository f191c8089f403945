"""The store: run records and cached results (a DuckDB file, or the server's API)."""
