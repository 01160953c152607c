"""The shortcuts issue 8 added for speed must not change what the code decides.

- Store: a write may be planned on our own last push without fetching; a write built on a stale
  head is refused by the push and redone, and a decision *not* to write (or a refusal) made on
  unfetched data is confirmed on a fetched head before it is returned.
- PerThreadTransport: one small pool per thread, all closed with the client.
- Manifest: the event-stream reader gives exactly the located loader's data, and a big manifest
  without aliases is not refused for its size.

No timing assertions here: the figures live in bench/results.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from velvet_runner import manifest as manifest_mod
from velvet_runner.client import tls_context
from velvet_runner.errors import ManifestError, NotFoundError
from velvet_runner.machine import INITIAL, Flow, State
from velvet_runner.records import Event, Job, new_job_id, utcnow
from velvet_runner.store import Store
from velvet_runner.transport import PerThreadTransport

CRED = "HK_PLATFORM_FULL"
BRANCH = "velvet-state"
MANIFESTS = Path(__file__).resolve().parent / "manifests"
SHIPPED = Path(__file__).resolve().parent.parent / "manifest" / "subscription-manifest.yml"


def make_job() -> Job:
    now = utcnow()
    return Job(job_id=new_job_id(), credential=CRED, vendor="heroku",
               flow_type=Flow.OPERATIONAL, env="prod", status=INITIAL[Flow.OPERATIONAL],
               created_at=now, updated_at=now, actor="test",
               events=[Event(at=now, actor="test", action="create", to_state="init")])


def noted(action: str) -> Callable[[Job], Job]:
    def apply(job: Job) -> Job:
        job.events.append(Event(at=utcnow(), actor="test", action=action))
        return job
    return apply


def actions(store: Store, job: Job) -> list[str]:
    return [e.action for e in store.get(CRED, job.job_id).events]


# --- store -----------------------------------------------------------------------------------


def test_consecutive_writes_of_one_store_all_land(bare_repo: Path, tmp_path: Path) -> None:
    store = Store(str(bare_repo), BRANCH, tmp_path / "cache")
    job, _ = store.create(make_job())
    for i in range(3):
        store.update(CRED, job.job_id, noted(f"n{i}"))
    assert actions(store, job) == ["create", "n0", "n1", "n2"]
    assert store.retries == 0


def test_a_write_on_our_own_stale_push_is_redone_on_the_fresh_head(bare_repo: Path,
                                                                   tmp_path: Path) -> None:
    a = Store(str(bare_repo), BRANCH, tmp_path / "cache-a")
    b = Store(str(bare_repo), BRANCH, tmp_path / "cache-b")
    job, _ = a.create(make_job())  # a's last push is the head a knows
    b.update(CRED, job.job_id, noted("from-b"))  # ...until b moves the branch
    a.update(CRED, job.job_id, noted("from-a"))
    assert actions(b, job) == ["create", "from-b", "from-a"]
    assert a.retries == 1  # the push built on a's own stale head was refused


def test_a_decision_not_to_write_is_confirmed_on_a_fetched_head(bare_repo: Path,
                                                               tmp_path: Path) -> None:
    a = Store(str(bare_repo), BRANCH, tmp_path / "cache-a")
    b = Store(str(bare_repo), BRANCH, tmp_path / "cache-b")
    job, _ = a.create(make_job())
    b.update(CRED, job.job_id, lambda j: j.model_copy(update={"status": State.VERIFYING}))
    seen: list[str] = []

    def only_once_verifying(current: Job) -> Job | None:
        seen.append(str(current.status))
        if current.status != State.VERIFYING:
            return None  # on a's unfetched view: nothing to do
        return noted("after-b")(current)

    a.update(CRED, job.job_id, only_once_verifying)
    assert seen == ["init", "verifying"]
    assert actions(b, job)[-1] == "after-b"


def test_a_refusal_on_unfetched_data_is_confirmed_on_a_fetched_head(bare_repo: Path,
                                                                   tmp_path: Path) -> None:
    a = Store(str(bare_repo), BRANCH, tmp_path / "cache-a")
    b = Store(str(bare_repo), BRANCH, tmp_path / "cache-b")
    first, _ = a.create(make_job())
    a.update(CRED, first.job_id, lambda j: j.model_copy(update={"status": State.ABORTED}))
    second, _ = b.create(make_job())  # a has not seen this job
    a.update(CRED, second.job_id, noted("seen-by-a"))  # not NotFound: fetched, then written
    assert actions(b, second)[-1] == "seen-by-a"
    with pytest.raises(NotFoundError):
        a.update(CRED, new_job_id(), noted("nope"))


# --- per-thread transport --------------------------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def hello_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_each_thread_gets_its_own_pool_and_close_closes_them_all(hello_url: str) -> None:
    transport = PerThreadTransport(tls_context())
    client = httpx.Client(base_url=hello_url, transport=transport)
    statuses: list[int] = []

    def call() -> None:
        statuses.append(client.get("/").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    call()
    assert statuses == [200] * 5
    assert 1 <= len(transport._pools) <= 5
    # a new thread prunes the pools of threads that have ended
    later = threading.Thread(target=call)
    later.start()
    later.join(30)
    assert len(transport._pools) <= 2  # this thread's and the new one's
    client.close()
    assert transport._pools == {}


# --- manifest --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*sorted(MANIFESTS.glob("*.yml")), SHIPPED],
                         ids=lambda p: p.name)
def test_the_fast_reader_gives_the_located_loaders_data(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        fast = manifest_mod._plain_data(text)
    except manifest_mod._NotPlain:
        return  # anchors, aliases, merge keys, odd tags, bad YAML: the located loader's job
    node = manifest_mod._compose(text)
    assert node is not None
    assert fast == manifest_mod._Located(str(path)).build(node)


def test_a_big_manifest_without_aliases_is_not_refused_for_size(tmp_path: Path) -> None:
    consumers = [{"consumer_id": f"c-{i}", "kind": "heroku_config_var", "env": "prod",
                  "app": f"app-{i}", "var": "API_KEY",
                  "healthcheck": {"type": "http", "url": f"https://app-{i}.example.com/h"}}
                 for i in range(3000)]  # ~27,000 nodes, more than MAX_NODES
    document = {"version": 1, "credentials": [{
        "name": "HK_BIG", "vendor": "heroku", "env": "prod",
        "vault": {"kind": "infisical_secret", "project_id": "p", "environment": "prod",
                  "name": "HK_BIG"},
        "consumers": consumers}]}
    text = yaml.safe_dump(document, sort_keys=False)
    loaded = manifest_mod.parse(text, "big.yml")
    assert len(loaded.credentials[0].consumers) == 3000
    # the located loader (used whenever there is a problem to point at) agrees
    broken = text.replace("HK_BIG", "hk_big", 1)
    with pytest.raises(ManifestError) as err:
        manifest_mod.parse(broken, "big.yml")
    assert all("more than" not in r for r in err.value.reasons)
