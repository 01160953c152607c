"""Reading the workflows and action.yml for the tests: documents, steps, and `velvet` calls."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
SAMPLE_JOB_ID = "01900000-0000-7000-8000-000000000000"
_EXPR = re.compile(r"^\$\{\{\s*(.*?)\s*\}\}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    """`on:` (PyYAML, being YAML 1.1, reads the key `on` as True)."""
    value = doc.get("on", doc.get(True))
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return dict(value or {})


def dispatch_inputs(doc: dict[str, Any]) -> dict[str, Any]:
    return dict((triggers(doc).get("workflow_dispatch") or {}).get("inputs") or {})


@dataclass
class Step:
    file: Path
    job: str | None  # None for action.yml
    step: dict[str, Any]
    inputs: dict[str, Any]  # the workflow's (or action's) inputs


def steps() -> Iterator[Step]:
    for path in WORKFLOWS:
        doc = load(path)
        inputs = dispatch_inputs(doc)
        for job_id, job in (doc.get("jobs") or {}).items():
            for step in job.get("steps") or []:
                yield Step(path, job_id, step, inputs)
    action = load(ACTION)
    for step in action["runs"]["steps"]:
        yield Step(ACTION, None, step, dict(action.get("inputs") or {}))


# --- `velvet` calls inside run: scripts --------------------------------------------------------


def _sample(name: str, expression: str | None, inputs: dict[str, Any]) -> str:
    """A plausible value for a shell variable, from where its env: entry takes it."""
    if expression:
        match = re.search(r"inputs\.([\w-]+)", expression)
        if match and match.group(1) in inputs:
            spec = inputs[match.group(1)] or {}
            if spec.get("type") == "choice":
                return str(spec["options"][0])
            if spec.get("type") == "boolean" or "&&" in expression:
                return "true"
            if spec.get("default") not in (None, ""):
                return str(spec["default"])
        if "job_id" in expression or "job-id" in expression:
            return SAMPLE_JOB_ID
        if "credential" in expression:
            return "HK_PLATFORM_FULL"
    if "JOB" in name:
        return SAMPLE_JOB_ID
    if "ACTION" in name:
        return "proceed_mint"  # an action every command taking one accepts
    return f"sample-{name.lower()}"


def _variables(step: Step, job_env: dict[str, Any]) -> dict[str, str]:
    env = {**job_env, **(step.step.get("env") or {})}
    values: dict[str, str] = {"RUNNER_TEMP": "/tmp/runner"}
    for name, raw in env.items():
        text = str(raw)
        match = _EXPR.match(text.strip())
        values[name] = _sample(name, match.group(1) if match else None, step.inputs) if (
            match) else text
    return values


def _logical_lines(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        yield buffer + line
        buffer = ""
    if buffer:
        yield buffer


def _substitute(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), f"sample-{match.group(1).lower()}")

    return re.sub(r"\$\{?(\w+)\}?", value, text)


@dataclass
class Call:
    where: str
    line: str
    argv: list[str]


def velvet_calls(*, optional_set: bool) -> Iterator[Call]:
    """Every `velvet ...` command line in every run: script, as argv after the shell's
    expansion. `${VAR:+words}` is expanded as if VAR were set (`optional_set`) or empty."""
    job_envs: dict[tuple[Path, str | None], dict[str, Any]] = {}
    for path in WORKFLOWS:
        for job_id, job in (load(path).get("jobs") or {}).items():
            job_envs[(path, job_id)] = dict(job.get("env") or {})
    for step in steps():
        script = step.step.get("run")
        if not script:
            continue
        values = _variables(step, job_envs.get((step.file, step.job), {}))
        for line in _logical_lines(str(script)):
            text = line.strip()
            text = re.sub(r"^[\w-]+\)\s*", "", text)  # a `case` label
            if not re.match(r"^velvet\s", text):
                continue
            expanded = re.sub(r"\$\{(\w+):\+([^}]*)\}",
                              lambda m: m.group(2) if optional_set else "", text)
            expanded = _substitute(expanded, values)
            lexer = shlex.shlex(expanded, posix=True, punctuation_chars=";&|<>")
            lexer.whitespace_split = True
            argv: list[str] = []
            for token in lexer:
                if token and set(token) <= set(";&|<>"):
                    break  # the end of the command: ;; | > >> && ||
                argv.append(token)
            where = f"{step.file.relative_to(ROOT)}" + (f" job {step.job}" if step.job else "")
            yield Call(where, text, argv[1:])
