"""`velvet rehearse`: run this repository's workflows on nektos/act against the sandbox.

`runner.Rehearsal` does the work; its click group is `rehearse` in velvet_sandbox.cli.
"""
