"""`velvet doctor`'s checks of who and what may act: every secret and variable the workflows
read is set where they read it, the GitHub App is installed where the manifest writes secrets,
and every approver has write access."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from velvet_runner.errors import VelvetError

from .checklist import Check, fail, ok, skip
from .expect import APP_CLIENT_VARIABLE

WRITE = ("admin", "write")  # the permissions that may push

if TYPE_CHECKING:
    from .doctor import Doctor


def names_in(d: Doctor, path: str, key: str) -> tuple[set[str] | None, int]:
    status, data = d.get(f"{path}?per_page=100" if key == "secrets" else
                            f"{path}?per_page=30")
    if status != 200:
        return None, status
    names = {row["name"] for row in data.get(key, [])}
    if data.get("total_count", 0) > len(names):  # more than one page: follow them all
        try:
            names = {row["name"] for row in d.api.get_all(path, key)}
        except VelvetError:
            return None, 0
    return names, status

def reads(d: Doctor) -> list[Check]:
    out: list[Check] = []
    if not d.expected.jobs:
        return [skip("reads", "secrets and variables the workflows read",
                     "no .github/workflows here: run doctor from the repository's root")]
    cache: dict[tuple[str, str], tuple[set[str] | None, int]] = {}

    def names(kind: str, scope: str) -> tuple[set[str] | None, int]:
        key = "secrets" if kind == "secret" else "variables"
        base = (f"/repos/{d.repo}/environments/{scope}" if scope
                else f"/repos/{d.repo}/actions")
        if (kind, scope) not in cache:
            cache[(kind, scope)] = names_in(d, f"{base}/{key}", key)
        return cache[(kind, scope)]

    for read in d.expected.reads:
        title = f"{read.kind} {read.name}"
        if not read.needed:
            out.append(skip(f"{read.kind}:{read.name}", title, f"not needed: "
                            f"{read.why_not}"))
            continue
        repo_names, repo_status = names(read.kind, "")
        scopes = list(read.environments) + ([""] if read.repository else [])
        missing, unreadable = [], []
        for scope in scopes:
            env_names, status = names(read.kind, scope) if scope else (repo_names,
                                                                         repo_status)
            if env_names is None and repo_names is None:
                unreadable.append(f"{scope or 'the repository'} (HTTP {status})")
            elif read.name not in (env_names or set()) | (repo_names or set()):
                missing.append(scope or "the repository")
        where = ", ".join(s or "the repository" for s in scopes)
        if missing:
            out.append(fail(f"{read.kind}:{read.name}", title,
                            f"not set for {', '.join(missing)} (read by "
                            f"{', '.join(read.workflows)})", read_fix(d, read, missing)))
        elif unreadable:
            out.append(skip(f"{read.kind}:{read.name}", title,
                            f"this token cannot list {read.kind}s of "
                            f"{', '.join(unreadable)}: give doctor a token with "
                            f"{'Secrets' if read.kind == 'secret' else 'Variables'} and "
                            "Environments read"))
        else:
            out.append(ok(f"{read.kind}:{read.name}", title, f"set where {where} read it "
                          "(names only)"))
    for name, kinds in d.expected.unpassed.items():
        out.append(fail(f"secret:{name}", f"secret {name}",
                        f"the manifest's {', '.join(kinds)} need it, and no workflow passes "
                        "it to velvet: every run would start without it",
                        f"add {name}: ${{{{ secrets.{name} }}}} to the env: of the velvet "
                        "steps that pass Velvet's other secrets (the stage, recovery and "
                        "revocation workflows), then set the secret"))
    return out

def read_fix(d: Doctor, read: Any, missing: list[str]) -> str:
    if read.kind == "secret":
        return (f"Settings → Environments → {missing[0]} → Add environment secret "
                f"{read.name}; or {read.name}=... {d.setup} (the value from the "
                "environment or standard input)")
    return (f"Settings → Secrets and variables → Actions → Variables → New repository "
            f"variable {read.name}; or {read.name}=... {d.setup}")

def app(d: Doctor) -> list[Check]:
    title = "GitHub App (writes Actions secrets)"
    targets = d.expected.secret_repositories
    if not targets:
        return [skip("app", title, "the manifest writes no GitHub Actions secret")]
    client_id = d.variable(APP_CLIENT_VARIABLE)
    if not client_id:
        return [skip("app", title, f"the repository variable {APP_CLIENT_VARIABLE} (the "
                     "App's client id) is not set or not readable")]
    status, org = d.get(f"/orgs/{d.owner}")
    path = f"/orgs/{d.owner}/installations" if status == 200 else "/user/installations"
    status, data = d.get(f"{path}?per_page=100")
    if status != 200:
        return [skip("app", title, f"installations cannot be listed with this token "
                     f"(HTTP {status}): use an owner's or organisation admin's token")]
    found = next((i for i in data.get("installations", [])
                  if i.get("client_id") == client_id
                  and str(i.get("account", {}).get("login", "")).lower()
                  == d.owner.lower()), None)
    app_fix = (f"install the App (client id {client_id}) on {d.owner}, on the "
               f"repositories {', '.join(targets)} (docs/setup.md §4)")
    if found is None:
        return [fail("app", title, f"no installation of client id {client_id} on "
                     f"{d.owner}", app_fix)]
    out: list[Check] = []
    permissions = found.get("permissions") or {}
    needed = d.expected.app_permissions
    missing = [k for k, v in needed.items() if permissions.get(k) != v]
    lacking = [f"{k}: {needed[k]}" for k in missing]
    if lacking:
        repo = [k for k in missing if k != "organization_secrets"]
        where = ([f"Repository permissions → {', '.join(repo)}: Read and write"] if repo else []
                 ) + (["Organization permissions → Secrets: Read and write"]
                      if "organization_secrets" in missing else [])
        out.append(fail("app:permissions", f"{title}: permissions", "lacks " +
                        ", ".join(lacking), "the App's settings → Permissions → " +
                        "; ".join(where) + "; then accept the new permissions on the "
                        "installation"))
    else:
        out.append(ok("app:permissions", f"{title}: permissions",
                      ", ".join(f"{k}: {v}" for k, v in needed.items())))
    out.append(app_repositories(d, found, targets, title))
    return out

def app_repositories(d: Doctor, found: dict[str, Any], targets: list[str], title: str) -> Check:
    if found.get("repository_selection") == "all":
        return ok("app:repositories", f"{title}: repositories", "all of "
                  f"{d.owner}'s repositories")
    status, data = d.get(f"/user/installations/{found['id']}/repositories?per_page=100")
    if status != 200 and d.settings.github_token is not None:
        from .api import GitHubApi

        app = GitHubApi(d.settings.github_token, d.api.api_url)
        status, data = app.call("GET", "/installation/repositories?per_page=100")
    if status != 200:
        return skip("app:repositories", f"{title}: repositories", "the installation's "
                    f"repositories cannot be listed here (HTTP {status})")
    have = {r.get("full_name") for r in data.get("repositories", [])}
    missing = [t for t in targets if t not in have]
    if missing:
        return fail("app:repositories", f"{title}: repositories", "not installed on "
                    f"{', '.join(missing)}", f"the App's installation → Configure → "
                    f"Repository access: add {', '.join(missing)}; or {d.setup}")
    return ok("app:repositories", f"{title}: repositories", f"installed on "
              f"{', '.join(targets)}")

def approvers(d: Doctor) -> list[Check]:
    out: list[Check] = []
    for login in d.expected.approvers:
        title = f"approver {login}: write access"
        status, data = d.get(f"/repos/{d.repo}/collaborators/{login}/permission")
        fix = (f"Settings → Collaborators and teams → Add people: {login}, role Write "
               "(an approver dispatches stages and reviews deployments)")
        if status == 404:
            out.append(fail(f"approver:{login}", title, "no such GitHub user", fix))
        elif status != 200:
            out.append(skip(f"approver:{login}", title, f"cannot be read (HTTP {status})"))
        elif data.get("permission") in WRITE:
            out.append(ok(f"approver:{login}", title, str(data.get("role_name"))))
        else:
            out.append(fail(f"approver:{login}", title,
                            f"has {data.get('permission')} access", fix))
    return out
