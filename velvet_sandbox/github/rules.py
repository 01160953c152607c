"""Repository rulesets, the rules in force on a branch, and classic branch protection
(docs.github.com/rest/repos/rules, .../branches/branch-protection).

A ruleset targets refs by `conditions.ref_name` (`include`/`exclude` of `refs/heads/<glob>`,
`~DEFAULT_BRANCH` or `~ALL`); only an `active` one is enforced (`evaluate` only reports). The
rule types and each type's required parameters are those of GitHub's OpenAPI description; a
rule that is not one of them is 422 "Invalid property /rules/N: data matches no possible
input." The fake enforces `pull_request` and `update` on the commits it makes itself (the
contents API, git refs): "Repository rule violations found" (409) unless the token's user is a
bypass actor (an admin, where the ruleset lets the admin role bypass).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    GitHubError,
    Json,
    _body,
    _invalid,
    _no_content,
    _not_found,
    glob_match,
)
from velvet_sandbox.github.records import Repo, Ruleset, _Token
from velvet_sandbox.github.state import State
from velvet_sandbox.github.views import _Views, listing, repo_of

ENFORCEMENTS = ("disabled", "active", "evaluate")
TARGETS = ("branch", "tag", "push")
ACTOR_TYPES = ("Integration", "OrganizationAdmin", "RepositoryRole", "Team", "DeployKey", "User")
ADMIN_ROLE_ID = 5  # the repository admin role, as a RepositoryRole bypass actor
# Rule type -> its required parameters (GitHub's OpenAPI description, repository-rule-*).
RULE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "creation": (), "update": ("update_allows_fetch_and_merge",), "deletion": (),
    "required_linear_history": (),
    "merge_queue": ("check_response_timeout_minutes", "grouping_strategy",
                    "max_entries_to_build", "max_entries_to_merge", "merge_method",
                    "min_entries_to_merge", "min_entries_to_merge_wait_minutes"),
    "required_deployments": ("required_deployment_environments",),
    "required_signatures": (),
    "pull_request": ("dismiss_stale_reviews_on_push", "require_code_owner_review",
                     "require_last_push_approval", "required_approving_review_count",
                     "required_review_thread_resolution"),
    "required_status_checks": ("required_status_checks", "strict_required_status_checks_policy"),
    "non_fast_forward": (),
    "commit_message_pattern": ("operator", "pattern"),
    "commit_author_email_pattern": ("operator", "pattern"),
    "committer_email_pattern": ("operator", "pattern"),
    "branch_name_pattern": ("operator", "pattern"),
    "tag_name_pattern": ("operator", "pattern"),
    "workflows": ("workflows",), "code_scanning": ("code_scanning_tools",),
    "copilot_code_review": (), "license_compliance_scanning": (),
    "file_path_restriction": ("restricted_file_paths",),
    "max_file_path_length": ("max_file_path_length",),
    "file_extension_restriction": ("restricted_file_extensions",),
    "max_file_size": ("max_file_size",),
}
MSG_VIOLATION = "Repository rule violations found\n\n{reasons}\n\n"


def _no_input(where: str) -> GitHubError:
    return _invalid(f"Invalid property {where}: data matches no possible input. See "
                    "`documentation_url`.")


def _ruleset_fields(body: Json, *, partial: bool) -> Json:
    """A POST (or PUT: `partial`) body's ruleset fields, checked as GitHub checks them."""
    out: Json = {}
    if not partial or "name" in body:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise _invalid('"name" wasn\'t supplied.')
        out["name"] = body["name"]
    if not partial or "enforcement" in body:
        if body.get("enforcement") not in ENFORCEMENTS:
            raise _invalid(f"For 'properties/enforcement', {json.dumps(body.get('enforcement'))}"
                           f" is not one of {json.dumps(list(ENFORCEMENTS))}.")
        out["enforcement"] = body["enforcement"]
    if "target" in body:
        if body["target"] not in TARGETS:
            raise _no_input("/target")
        out["target"] = body["target"]
    if "conditions" in body:
        conditions = body["conditions"]
        ref_name = conditions.get("ref_name") if isinstance(conditions, dict) else None
        if not isinstance(conditions, dict) or (ref_name is not None and not (
                isinstance(ref_name, dict) and all(
                    isinstance(ref_name.get(k, []), list) and
                    all(isinstance(p, str) for p in ref_name.get(k, []))
                    for k in ("include", "exclude")))):
            raise _no_input("/conditions")
        out["conditions"] = conditions
    if "rules" in body:
        rules = body["rules"]
        if not isinstance(rules, list):
            raise _no_input("/rules")
        for i, rule in enumerate(rules):
            kind = rule.get("type") if isinstance(rule, dict) else None
            params = rule.get("parameters", {}) if isinstance(rule, dict) else None
            required = RULE_PARAMETERS.get(str(kind))
            if required is None or not isinstance(params, dict) or \
                    any(key not in params for key in required):
                raise _no_input(f"/rules/{i}")
        out["rules"] = rules
    if "bypass_actors" in body:
        actors = body["bypass_actors"]
        if not isinstance(actors, list) or not all(
                isinstance(a, dict) and a.get("actor_type") in ACTOR_TYPES for a in actors):
            raise _no_input("/bypass_actors")
        out["bypass_actors"] = actors
    return out


def _unique(repo: Repo, name: str, ruleset_id: int | None = None) -> None:
    if any(r.name == name and r.id != ruleset_id for r in repo.rulesets.values()):
        raise GitHubError(422, "Validation Failed", [{"resource": "Ruleset", "code": "custom",
                                                      "field": "name",
                                                      "message": "Name must be unique"}])


async def rulesets(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "POST" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        if request.method == "GET":
            rows = [repo.rulesets[i] for i in sorted(repo.rulesets)]
            # GitHub lists rulesets as a bare array without their rules or conditions.
            page = [{k: v for k, v in views.ruleset(repo, r).items()
                     if k not in ("rules", "conditions")} for r in rows]
            return json_response(page)
        fields = _ruleset_fields(body, partial=False)
        _unique(repo, fields["name"])
        ruleset = Ruleset.model_validate(fields, context=views.state._seeding())
        repo.rulesets[ruleset.id] = ruleset
        return json_response(views.ruleset(repo, ruleset), 201)


async def one_ruleset(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "PUT" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        raw = request.path_params["ruleset_id"]
        ruleset = repo.rulesets.get(int(raw)) if raw.isdigit() else None
        if ruleset is None:
            raise _not_found()
        if request.method == "GET":
            return json_response(views.ruleset(repo, ruleset))
        if request.method == "DELETE":
            del repo.rulesets[ruleset.id]
            return _no_content()
        fields = _ruleset_fields(body, partial=True)
        if "name" in fields:
            _unique(repo, fields["name"], ruleset.id)
        for key, value in fields.items():
            setattr(ruleset, key, value)
        ruleset.updated_at = views.state.clock()
        return json_response(views.ruleset(repo, ruleset))


def _targets(repo: Repo, ruleset: Ruleset, branch: str) -> bool:
    ref_name = (ruleset.conditions or {}).get("ref_name") or {}
    ref = f"refs/heads/{branch}"

    def matches(pattern: str) -> bool:
        if pattern == "~ALL":
            return True
        if pattern == "~DEFAULT_BRANCH":
            return branch == repo.default_branch
        return glob_match(pattern if pattern.startswith("refs/") else f"refs/heads/{pattern}",
                          ref)

    return any(matches(p) for p in ref_name.get("include") or []) and \
        not any(matches(p) for p in ref_name.get("exclude") or [])


def active_rules(repo: Repo, branch: str) -> list[tuple[Ruleset, Json]]:
    """Every rule an active branch ruleset applies to `branch`, with its ruleset."""
    return [(ruleset, rule) for _, ruleset in sorted(repo.rulesets.items())
            if ruleset.enforcement == "active" and ruleset.target == "branch"
            and _targets(repo, ruleset, branch) for rule in ruleset.rules]


async def branch_rules(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        branch = request.path_params["branch"]
        rows = [{**rule, "ruleset_source_type": "Repository", "ruleset_source": repo.full_name,
                 "ruleset_id": ruleset.id} for ruleset, rule in active_rules(repo, branch)]
        return listing(request, rows, dict)


def _bypasses(state: State, repo: Repo, ruleset: Ruleset, login: str) -> bool:
    role = state.role(repo, login)
    for actor in ruleset.bypass_actors:
        kind, ident = actor.get("actor_type"), actor.get("actor_id")
        if kind == "RepositoryRole" and ident == ADMIN_ROLE_ID and role == "admin":
            return True
        if kind == "OrganizationAdmin" and role == "admin":
            return True
    return False


def check_push(state: State, repo: Repo, branch: str, login: str, *, new: bool) -> None:
    """Refuse a commit the fake itself would put on `branch` where an active rule forbids it."""
    reasons: list[str] = []
    for ruleset, rule in active_rules(repo, branch):
        if _bypasses(state, repo, ruleset, login):
            continue
        kind = rule.get("type")
        if kind == "pull_request":
            reasons.append("Changes must be made through a pull request.")
        elif kind == "update" and not new:
            reasons.append("Cannot update this protected ref.")
        elif kind == "creation" and new:
            reasons.append("Cannot create ref due to creations being restricted.")
    if reasons:
        raise GitHubError(409, MSG_VIOLATION.format(reasons="\n".join(dict.fromkeys(reasons))))


async def branch_protection(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        branch = request.path_params["branch"]
        if branch not in repo.branches:
            raise GitHubError(404, "Branch not found")
        protection = repo.protections.get(branch)
        if protection is None:
            raise GitHubError(404, "Branch not protected")
        url = f"{views.base}/repos/{repo.full_name}/branches/{branch}/protection"
        return json_response({"url": url, **protection})
