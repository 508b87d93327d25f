"""The `babelsieve` command line: one module per command (`inspect` is in inspect_output.py: main.py also
runs as a script under spark-submit, and a module named inspect there would shadow the standard library's);
main.py holds the command table.

Command modules import the core at the top; the heavy layers (the report's polars and matplotlib, the
stages, language ID) are imported inside the command that uses them, so `babelsieve --help` stays fast.
"""
