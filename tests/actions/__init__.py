"""Tests of the GitHub Actions layer: workflows, action.yml, gate, outputs, plan."""
