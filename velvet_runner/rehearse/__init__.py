"""`velvet rehearse`: run this repository's workflows on nektos/act against the sandbox.

`runner.Rehearsal` does the work; `cli.py` is its click group.
"""
