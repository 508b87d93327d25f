"""The `babelsieve` command line: one module per command (main.py registers them)."""
