"""Rate budgets: the runner's pacing against fakes that enforce the vendors' published limits."""
