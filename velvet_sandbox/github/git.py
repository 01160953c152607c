"""The repository's git data as GitHub's REST API shows and writes it: branches, compare,
file contents, and git trees, commits and refs (docs.github.com/rest/git, .../repos/contents,
.../commits/commits#compare-two-commits).

The fake keeps files as text: a commit's tree is its files flattened to path -> blob, blobs
have git's ids, trees and commits ids hashed over their content (records.Repo). What the
rulesets forbid on a branch is refused on the fake's own writes (rules.check_push). Git pushes
do not go through the fake: a rehearsal's state branch lives in a local bare repository.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import textwrap
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    GitHubError,
    Json,
    _body,
    _invalid,
    _iso,
    _not_found,
)
from velvet_sandbox.github.records import Repo, _Token
from velvet_sandbox.github.rules import active_rules, check_push
from velvet_sandbox.github.views import _Views, repo_of

MODES = ("100644", "100755", "040000", "160000", "120000")


def _commit_json(views: _Views, repo: Repo, sha: str) -> Json:
    commit = repo.commits[sha]
    api = f"{views.base}/repos/{repo.full_name}"
    return {
        "sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{api}/commits/{sha}",
        "html_url": f"{views.base}/{repo.full_name}/commit/{sha}",
        "commit": {"message": commit.message, "url": f"{api}/git/commits/{sha}",
                   "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
                   "committer": {"name": "GitHub", "email": "noreply@github.com",
                                 "date": _iso(commit.at)}},
        "parents": [{"sha": p, "url": f"{api}/commits/{p}"} for p in commit.parents],
    }


async def get_branch(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        name = request.path_params["branch"]
        sha = repo.refs.get(name)
        if sha is None:
            raise GitHubError(404, "Branch not found")
        api = f"{views.base}/repos/{repo.full_name}/branches/{quote(name, safe='')}"
        protected = name in repo.protections or bool(active_rules(repo, name))
        return json_response({
            "name": name, "commit": _commit_json(views, repo, sha),
            "_links": {"self": api, "html": f"{views.base}/{repo.full_name}/tree/{name}"},
            "protected": protected,
            "protection": {"enabled": name in repo.protections,
                           "required_status_checks": {"enforcement_level": "off",
                                                      "contexts": [], "checks": []}},
            "protection_url": f"{api}/protection",
        })


def _resolve(repo: Repo, ref: str) -> str | None:
    if ref in repo.refs:
        return repo.refs[ref]
    return ref if ref in repo.commits else None


async def compare(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        base_ref, sep, head_ref = request.path_params["basehead"].partition("...")
        base, head = _resolve(repo, base_ref), _resolve(repo, head_ref)
        if not sep or base is None or head is None:
            raise _not_found()
        behind, ahead = repo.ancestors(base), repo.ancestors(head)
        merge_base = next((sha for sha in ahead if sha in behind), None)
        if merge_base is None:
            raise GitHubError(404, f"No common ancestor between {base_ref} and {head_ref}.")
        ahead_by, behind_by = ahead.index(merge_base), behind.index(merge_base)
        status = ("identical" if base == head else "ahead" if behind_by == 0 else
                  "behind" if ahead_by == 0 else "diverged")
        api = f"{views.base}/repos/{repo.full_name}"
        return json_response({
            "url": f"{api}/compare/{base_ref}...{head_ref}",
            "html_url": f"{views.base}/{repo.full_name}/compare/{base_ref}...{head_ref}",
            "status": status, "ahead_by": ahead_by, "behind_by": behind_by,
            "total_commits": ahead_by,
            "base_commit": _commit_json(views, repo, base),
            "merge_base_commit": _commit_json(views, repo, merge_base),
            "commits": [_commit_json(views, repo, sha) for sha in reversed(ahead[:ahead_by])],
            "files": [],
        })


def _entry(views: _Views, repo: Repo, ref: str, path: str, blob: str | None,
           content: str | None) -> Json:
    api = f"{views.base}/repos/{repo.full_name}"
    kind = "dir" if blob is None else "file"
    out: Json = {
        "type": kind, "name": posixpath.basename(path), "path": path,
        "sha": blob or repo.tree({}),
        "size": len(repo.blobs.get(blob, "").encode()) if blob else 0,
        "url": f"{api}/contents/{path}?ref={ref}",
        "html_url": f"{views.base}/{repo.full_name}/{'blob' if blob else 'tree'}/{ref}/{path}",
        "git_url": f"{api}/git/{'blobs' if blob else 'trees'}/{blob or ''}",
        "download_url": (f"{views.base}/{repo.full_name}/raw/{ref}/{path}" if blob else None),
        "_links": {"self": f"{api}/contents/{path}?ref={ref}",
                   "html": f"{views.base}/{repo.full_name}/blob/{ref}/{path}"},
    }
    if content is not None:
        out["encoding"] = "base64"
        encoded = base64.b64encode(content.encode("utf-8")).decode("ascii")
        # GitHub wraps the content at 60 characters a line, ending in a newline.
        out["content"] = "\n".join(textwrap.wrap(encoded, 60)) + "\n"
    return out


async def contents(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "PUT" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        path = request.path_params["path"].strip("/")
        if request.method == "PUT":
            return _put_file(views, repo, token, path, body)
        ref = request.query_params.get("ref") or repo.default_branch
        sha = _resolve(repo, ref)
        if sha is None:
            raise GitHubError(404, f"No commit found for the ref {ref}")
        tree = repo.trees[repo.commits[sha].tree]
        if path in tree:
            return json_response(_entry(views, repo, ref, path, tree[path],
                                        repo.blobs.get(tree[path], "")))
        prefix = f"{path}/" if path else ""
        below = sorted(p for p in tree if p.startswith(prefix))
        if not below:
            raise _not_found()
        names: dict[str, str | None] = {}
        for found in below:
            head, _, rest = found[len(prefix):].partition("/")
            names.setdefault(head, None if rest else tree[found])
        return json_response([_entry(views, repo, ref, prefix + name, blob, None)
                              for name, blob in names.items()])


def _put_file(views: _Views, repo: Repo, token: _Token, path: str, body: Json) -> Response:
    for key in ("message", "content"):
        if not isinstance(body.get(key), str):
            raise _invalid(f'"{key}" wasn\'t supplied.')
    try:
        text = base64.b64decode(body["content"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("content is not valid Base64") from None
    branch = body.get("branch") or repo.default_branch
    head = repo.refs.get(branch)
    if head is None:
        raise GitHubError(404, f"Branch {branch} not found")
    files = dict(repo.trees[repo.commits[head].tree])
    current = files.get(path)
    if current is not None and "sha" not in body:
        raise _invalid('"sha" wasn\'t supplied.')
    if current is not None and body["sha"] != current:
        raise GitHubError(409, f"{path} does not match {body['sha']}")
    check_push(views.state, repo, branch, token.login, new=False)
    files[path] = repo.blob(text)
    sha = repo.commit(files, [head], body["message"], views.state.clock())
    repo.set_ref(branch, sha)
    out = {"content": _entry(views, repo, branch, path, files[path], None),
           "commit": _commit_json(views, repo, sha)}
    return json_response(out, 200 if current is not None else 201)


async def create_tree(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request)
    with views.state._lock:
        repo = repo_of(request, token, views)
        entries = body.get("tree")
        if not isinstance(entries, list):
            raise _invalid('"tree" wasn\'t supplied.')
        files: dict[str, str] = {}
        base = body.get("base_tree")
        if base is not None:
            commit = repo.commits.get(str(base))
            tree = repo.trees.get(str(base)) or (repo.trees[commit.tree] if commit else None)
            if tree is None:
                raise GitHubError(422, "Invalid request.\n\nbase_tree is not a valid tree "
                                  "oid")
            files.update(tree)
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or \
                    entry.get("mode") not in MODES or entry.get("type") != "blob":
                raise _invalid("tree entries must each have a path, a mode and type blob "
                               "(the fake keeps files only)")
            if "content" in entry:
                files[entry["path"]] = repo.blob(str(entry["content"]))
            elif entry.get("sha") is None:
                files.pop(entry["path"], None)
            elif entry["sha"] in repo.blobs:
                files[entry["path"]] = entry["sha"]
            else:
                raise GitHubError(422, f"Invalid request.\n\nsha {entry['sha']} is not a blob")
        sha = repo.tree(files)
        api = f"{views.base}/repos/{repo.full_name}/git"
        return json_response({
            "sha": sha, "url": f"{api}/trees/{sha}", "truncated": False,
            "tree": [{"path": p, "mode": "100644", "type": "blob", "sha": b,
                      "url": f"{api}/blobs/{b}"} for p, b in files.items()],
        }, 201)


async def create_commit(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request)
    with views.state._lock:
        repo = repo_of(request, token, views)
        for key in ("message", "tree"):
            if not isinstance(body.get(key), str):
                raise _invalid(f'"{key}" wasn\'t supplied.')
        if body["tree"] not in repo.trees:
            raise GitHubError(422, "Tree SHA does not exist")
        parents = body.get("parents", [])
        if not isinstance(parents, list) or any(p not in repo.commits for p in parents):
            raise GitHubError(422, "Parent SHA does not exist or is not a commit object")
        files = dict(repo.trees[body["tree"]])
        sha = repo.commit(files, list(parents), body["message"], views.state.clock())
        return json_response(_git_commit(views, repo, sha), 201)


def _git_commit(views: _Views, repo: Repo, sha: str) -> Json:
    commit = repo.commits[sha]
    api = f"{views.base}/repos/{repo.full_name}/git"
    who = {"name": "GitHub", "email": "noreply@github.com", "date": _iso(commit.at)}
    return {"sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{api}/commits/{sha}",
            "html_url": f"{views.base}/{repo.full_name}/commit/{sha}", "author": who,
            "committer": who, "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{api}/trees/{commit.tree}"},
            "parents": [{"sha": p, "url": f"{api}/commits/{p}",
                         "html_url": f"{views.base}/{repo.full_name}/commit/{p}"}
                        for p in commit.parents],
            "verification": {"verified": True, "reason": "valid", "signature": None,
                             "payload": None, "verified_at": _iso(commit.at)}}


async def create_ref(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request)
    with views.state._lock:
        repo = repo_of(request, token, views)
        ref, sha = body.get("ref"), body.get("sha")
        if not isinstance(ref, str) or not isinstance(sha, str):
            raise _invalid('"ref" and "sha" must be supplied.')
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _invalid("Reference name must start with 'refs/' and have at least two "
                           "slashes.")
        if not ref.startswith("refs/heads/"):
            raise _invalid("the fake keeps branches only (refs/heads/...)")
        if sha not in repo.commits:
            raise GitHubError(422, "Object does not exist")
        branch = ref.removeprefix("refs/heads/")
        if branch in repo.refs:
            raise GitHubError(422, "Reference already exists")
        check_push(views.state, repo, branch, token.login, new=True)
        repo.set_ref(branch, sha)
        api = f"{views.base}/repos/{repo.full_name}/git"
        return json_response({"ref": ref, "node_id": f"REF_{sha[:12]}",
                              "url": f"{api}/refs/heads/{quote(branch, safe='/')}",
                              "object": {"type": "commit", "sha": sha,
                                         "url": f"{api}/commits/{sha}"}}, 201)

