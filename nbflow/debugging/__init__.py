"""Bring a failed task run back: its kept inputs, its failure, its code, in a kernel or a notebook."""
