"""The repositories an installation token can see, and the contents API over their files.

    GET /installation/repositories          {"total_count", "repository_selection",
                                             "repositories": [...]}, paged like every listing
    GET /repos/{owner}/{repo}/contents/{path}[?ref=]
                                            a file (base64 content, line-wrapped as GitHub
                                            sends it) or a directory (an array of entries)

Files live on the repository's default branch (`Repo.files`, seeded or `State.add_file`);
another `ref` is 404 "No commit found for the ref", as on GitHub. A directory exists while a file
lies under it. GitHub answers a directory whole (up to 1,000 entries), without paging.
"""

from __future__ import annotations

import base64
import hashlib
import textwrap

from starlette.requests import Request
from starlette.responses import Response

from velvet_runner.sandbox.control import json_response
from velvet_runner.sandbox.github.common import GitHubError, Json, _not_found
from velvet_runner.sandbox.github.records import Repo, _Token
from velvet_runner.sandbox.github.views import _Views, listing, repo_of

MAX_DIRECTORY_ENTRIES = 1000


def blob_sha(text: str) -> str:
    """The git blob id of a file's bytes (what GitHub's `sha` of a file is)."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


async def installation_repositories(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repos = [r for name, r in sorted(views.state._repos.items())
                 if token.repos is None or name in token.repos]
        # "all" when the installation reaches every repository, else the ones chosen for it.
        selection = "all" if token.repos is None else "selected"
        return listing(request, repos, views.repo, "repositories",
                       {"repository_selection": selection})


def _entry(views: _Views, repo: Repo, path: str, kind: str, text: str | None) -> Json:
    api = f"{views.base}/repos/{repo.full_name}/contents/{path}"
    html = f"{views.base}/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/" \
           f"{repo.default_branch}/{path}"
    sha = blob_sha(text) if text is not None else blob_sha(path)  # a tree's id: any stable one
    git = f"{views.base}/repos/{repo.full_name}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
    return {
        "type": kind, "size": len(text.encode("utf-8")) if text is not None else 0,
        "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha, "url": api,
        "git_url": git, "html_url": html,
        "download_url": (f"{views.base}/{repo.full_name}/raw/{repo.default_branch}/{path}"
                         if kind == "file" else None),
        "_links": {"self": api, "git": git, "html": html},
    }


async def get_contents(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        ref = request.query_params.get("ref")
        if ref is not None and ref not in repo.branches:
            raise GitHubError(404, f"No commit found for the ref {ref}")
        path = request.path_params["path"].strip("/")
        text = repo.files.get(path)
        if text is not None:
            encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
            body = {**_entry(views, repo, path, "file", text), "encoding": "base64",
                    "content": "\n".join(textwrap.wrap(encoded, 60)) + "\n"}
            return json_response(body)
        prefix = f"{path}/" if path else ""
        children: dict[str, str | None] = {}
        for name, content in repo.files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix):].partition("/")
            children[prefix + head] = content if not rest else None
        if not children:
            raise _not_found()
        rows = [_entry(views, repo, child, "dir" if content is None else "file", content)
                for child, content in sorted(children.items())][:MAX_DIRECTORY_ENTRIES]
        return json_response(rows)
