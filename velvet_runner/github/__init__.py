"""GitHub as the runner meets it in Actions: `api` (GitHubApi, the one budgeted GitHub client),
`gate` (environment reviews, four eyes, `velvet approve`'s fallback), `dispatch` (a job's next
stage, the due rotations) and `summary` (GITHUB_OUTPUT, the step summary, the run's context)."""
