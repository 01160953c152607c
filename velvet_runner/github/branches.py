"""`velvet doctor`'s checks of the state branch (exists, orphan, no .github/, its ruleset) and
of the default branch (a reviewed pull request required, CODEOWNERS naming the approvers)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from .checklist import Check, fail, ok, skip
from .codeowners import CODEOWNERS_FILES, codeowners_of
from .expect import CODEOWNED, STATE_RULES

if TYPE_CHECKING:
    from .doctor import Doctor


def state_branch(d: Doctor) -> list[Check]:
    branch, repo = d.state_branch, d.repo
    out: list[Check] = []
    fix = f"{d.setup} (an orphan branch holding a README only); or docs/setup.md §2"
    status, _ = d.get(f"/repos/{repo}/branches/{branch}")
    if status == 404:
        out.append(fail("state:exists", f"state branch {branch}", "does not exist", fix))
    else:
        out.append(ok("state:exists", f"state branch {branch}", "exists"))
        status, data = d.get(f"/repos/{repo}/compare/{d.default_branch}...{branch}")
        if status == 404 and "No common ancestor" in str((data or {}).get("message", "")):
            out.append(ok("state:orphan", f"state branch {branch}: orphan",
                          f"no history in common with {d.default_branch}"))
        else:
            out.append(fail("state:orphan", f"state branch {branch}: orphan",
                            f"it shares history with {d.default_branch}",
                            "recreate it with `git switch --orphan` carrying only its "
                            "records (docs/setup.md §2)"))
        status, _ = d.get(f"/repos/{repo}/contents/.github?ref={branch}")
        if status == 404:
            out.append(ok("state:no-github", f"state branch {branch}: no .github/",
                          "none"))
        else:
            out.append(fail("state:no-github", f"state branch {branch}: no .github/",
                            "it holds .github/ (workflows the state token could change)",
                            f"delete .github/ from {branch} in a commit"))
    status, rules = d.get(f"/repos/{repo}/rules/branches/{branch}")
    title = f"state branch {branch}: ruleset"
    rule_fix = (f"Settings → Rules → Rulesets → New branch ruleset on {branch}: Block force "
                f"pushes, Restrict deletions; or {d.setup}")
    if status != 200:
        out.append(skip("state:ruleset", title, f"rules cannot be read (HTTP {status})"))
        return out
    kinds = {r.get("type") for r in rules or []}
    missing = [k for k in STATE_RULES if k not in kinds]
    blocking = sorted(kinds & {"update", "pull_request", "creation"})
    if missing:
        names = {"non_fast_forward": "force pushes", "deletion": "deletion"}
        out.append(fail("state:ruleset", title, "nothing blocks " +
                        " or ".join(names[k] for k in missing) + " (a rewritten branch "
                        "orphans a minted token)", rule_fix))
    elif blocking:
        out.append(fail("state:ruleset", title, f"{', '.join(blocking)} also applies: the "
                        "workflows' own pushes (GITHUB_TOKEN) would be refused",
                        f"Settings → Rules → Rulesets: keep only Block force pushes and "
                        f"Restrict deletions on {branch} (docs/setup.md §2, §9b)"))
    else:
        out.append(ok("state:ruleset", title, "force pushes and deletion blocked"))
    return out

def default_branch(d: Doctor) -> list[Check]:
    branch, repo = d.default_branch, d.repo
    out: list[Check] = []
    title = f"default branch {branch}: reviewed pull requests"
    status, rules = d.get(f"/repos/{repo}/rules/branches/{branch}")
    review = None
    for rule in rules if status == 200 else []:
        params = rule.get("parameters") or {}
        if rule.get("type") == "pull_request" and \
                params.get("required_approving_review_count", 0) >= 1:
            review = (params.get("required_approving_review_count"),
                      bool(params.get("require_code_owner_review")), "a ruleset")
    if review is None:
        status, protection = d.get(f"/repos/{repo}/branches/{branch}/protection")
        reviews = (protection or {}).get("required_pull_request_reviews") \
            if status == 200 else None
        if reviews and reviews.get("required_approving_review_count", 0) >= 1:
            review = (reviews.get("required_approving_review_count"),
                      bool(reviews.get("require_code_owner_reviews")), "branch protection")
    fix = (f"Settings → Rules → Rulesets → New branch ruleset on the default branch: "
           f"Require a pull request, 1 approval, review from Code Owners; or {d.setup}")
    if review is None:
        out.append(fail("default:review", title, "a push changes the manifest (where every "
                        "new token goes) or the workflows without a review", fix))
    elif not review[1]:
        out.append(fail("default:review", title, f"{review[2]} requires {review[0]} "
                        "approval(s) but not the code owners'", fix))
    else:
        out.append(ok("default:review", title, f"{review[2]} requires {review[0]} "
                      "approval(s), the code owners' among them"))
    out.append(codeowners(d, branch))
    return out

def codeowners(d: Doctor, branch: str) -> Check:
    title = "CODEOWNERS: manifest and workflows"
    lines = "; ".join(d.expected.codeowners)
    fix = f"add to .github/CODEOWNERS on {branch}: {lines}; or {d.setup}"
    for path in CODEOWNERS_FILES:
        status, data = d.get(f"/repos/{d.repo}/contents/{path}?ref={branch}")
        if status == 200 and isinstance(data, dict) and data.get("content") is not None:
            text = base64.b64decode(str(data["content"])).decode("utf-8", "replace")
            break
    else:
        return fail("default:codeowners", title, "no CODEOWNERS file", fix)
    approvers = set(d.expected.approvers)
    problems = []
    for owned in CODEOWNED:
        sample = owned.strip("/") + "/x.yml"
        owners = codeowners_of(text, sample) or []
        users = [o.removeprefix("@") for o in owners if "/" not in o]
        if not owners:
            problems.append(f"{owned} has no owner")
        elif any(u not in approvers for u in users):
            problems.append(f"{owned} is owned by {', '.join(owners)}, not only the "
                            "manifest's approvers")
    if problems:
        return fail("default:codeowners", title, f"{path}: " + "; ".join(problems), fix)
    return ok("default:codeowners", title, f"{path} names the approvers for "
              f"{' and '.join(CODEOWNED)}")
