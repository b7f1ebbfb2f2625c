"""Thin stage entry points: `python -m stages.<name> ...` (run from the repository root)."""
