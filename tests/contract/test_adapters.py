"""The adapter contract: every registered vendor and target kind, against its fake.

Each test is parametrised over the registries (`vendors.load_all()`, `targets.load_all()`), so a
kind joins by registering, with no edit here: its module, its fake (a `registry.Fake` in
velvet_sandbox/ whose `vendors` or `targets` name the kind), and a row of its kind in
tests/manifests/good-every-kind.yml (which test_manifest.py already requires). A kind without a
fake or without that row fails here, loudly; nothing is skipped. Adapters are built only the
way Velvet builds them, `Wiring(settings).vendor(credential)` and `.target(config)`, with the
settings the sandbox prints.

What a kind declares chooses what is asked of it:

    vendor  verify: a live value gives an Identity; CAN_PROBE: a refused value is AuthRejected
            and not live (without it, nothing proves a value dead: any non-empty one is live)
            CAN_MINT: mint gives a second, independent live value, found again by its label;
            CAN_REVOKE: revoke kills it, then answers False (already gone);
            CAN_ROLL: roll replaces the value in place; CAN_REGENERATE: recover_minted does,
            for a minted value; an action a flag says no to is refused (InputError)
    target  write (twice: idempotent), then shown: read back where READABLE, else shown by
            the target's own record of the write (GitHub's updated_at); delete where it
            can (a vault kind must); probe changes nothing
    both    an unreachable API is VendorUnavailable; refused credentials are AuthRejected;
            and where the fake serves a control API (`Fake.control`): a 5xx is
            VendorUnavailable, a 429 (with or without Retry-After) is a wait that RetryPolicy
            sits out, and a target's write acknowledged but not stored is not shown

No exception text holds a value the sandbox ever issued. The operator-manual vendor has no API:
its fake serves nothing and issues the values a person would; its contract is that it works
with every fake's API unreachable, accepts any non-empty value and refuses mint, revoke and roll.
moto (AWS) serves no control API, so no fault is injected into aws_iam or aws_ssm_parameter.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from engine.support import leaks, tag
from pydantic import SecretStr

from velvet_runner.client import RetryPolicy
from velvet_runner.errors import (
    AuthRejected,
    InputError,
    RateLimited,
    VendorError,
    VendorUnavailable,
)
from velvet_runner.manifest import Manifest
from velvet_runner.manifest_models import Credential, TargetConfig
from velvet_runner.records import fingerprint
from velvet_runner.settings import Settings
from velvet_runner.targets import load_all as load_targets
from velvet_runner.targets.base import Target
from velvet_runner.vendors import load_all as load_vendors
from velvet_runner.vendors.base import Identity, Vendor
from velvet_runner.wiring import Wiring
from velvet_sandbox import registry
from velvet_sandbox.world import Sandbox, World

ROOT = Path(__file__).resolve().parents[2]
EVERY_KIND = ROOT / "tests" / "manifests" / "good-every-kind.yml"
# Budget time runs an hour a second: a rate limit's pause on the account is a blink.
TIME_SCALE = "3600"
# Velvet's own credentials in a fake's `bootstrap` settings, by name (the rest are places).
CREDENTIAL_SETTING = re.compile(r"(TOKEN|SECRET|CLIENT_ID|_KEY_ID|_ACCESS_KEY)$")
CHILD_TIMEOUT = 300  # a safety net, not a timing assertion
T = TypeVar("T")


# --- which fake holds which kind --------------------------------------------------------------


def _covering(role: str, kind: str) -> type[registry.Fake] | None:
    return next((cls for cls in registry.load_all().values() if kind in getattr(cls, role)),
                None)


def _faultable(role: str, kinds: dict[str, Any]) -> list[str]:
    """The kinds whose fake serves a control API (faults can be injected); a kind without a
    fake is kept, so that its test fails on the missing fake instead of vanishing."""
    found = []
    for kind in kinds:
        fake = _covering(role, kind)
        if fake is None or fake.control:
            found.append(kind)
    return found


# Which kinds each parametrised argument runs over: read at collection, from the registries.
KINDS: dict[str, Callable[[], list[str]]] = {
    "vendor_kind": lambda: list(load_vendors()),
    "target_kind": lambda: list(load_targets()),
    "faultable_vendor": lambda: _faultable("vendors", load_vendors()),
    "faultable_target": lambda: _faultable("targets", load_targets()),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kinds in KINDS.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, kinds())


# --- the world --------------------------------------------------------------------------------


@dataclass
class Contract:
    """The sandbox of good-every-kind.yml, seeded once for the module, and the test's env."""

    sandbox: Sandbox
    world: World
    manifest: Manifest
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    wirings: list[Wiring]

    def fake(self, role: str, kind: str) -> registry.Fake:
        for fake in self.sandbox.fakes.values():
            if kind in getattr(fake, role):
                return fake
        pytest.fail(f"no fake registers the {role[:-1]} kind {kind}: a kind is tested against "
                    "its fake, so add one to velvet_sandbox/ (a registry.Fake naming "
                    f"{kind!r} in its `{role}`, registered with registry.register)")

    def credential(self, vendor: str) -> Credential:
        found = [c for c in self.manifest.credentials if c.vendor == vendor]
        if not found:
            pytest.fail(f"{EVERY_KIND.name} has no credential of vendor {vendor}: add one")
        return found[0]

    def places(self, kind: str) -> list[TargetConfig]:
        """Every place of `kind` the manifest names (consumers and vaults), once each."""
        seen: dict[tuple[str, ...], TargetConfig] = {}
        for credential in self.manifest.credentials:
            for config in (credential.vault, *credential.consumers):
                if config.kind == kind:
                    seen.setdefault(config.place(), config)
        if not seen:
            pytest.fail(f"{EVERY_KIND.name} has no consumer of kind {kind}: add one to its "
                        "first credential")
        return list(seen.values())

    def wiring(self, **overrides: str) -> Wiring:
        """Velvet's wiring for the sandbox's settings, with `overrides` on top (boto3 reads
        AWS_* from the process, so the settings go there too)."""
        env = {**self.env, **overrides}
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        wiring = Wiring(Settings.from_env(env))
        self.wirings.append(wiring)
        return wiring

    def vendor(self, kind: str, **overrides: str) -> Vendor:
        return self.wiring(**overrides).vendor(self.credential(kind))

    def issue(self, kind: str) -> registry.Issued:
        """A fresh live value of the vendor's credential, issued by its fake."""
        return self.fake("vendors", kind).issue(self.credential(kind), self.sandbox.identity)

    def unreachable(self, fake: registry.Fake) -> dict[str, str]:
        """Settings that point Velvet at a port where nothing answers, for `fake`'s API."""
        if fake.setting is None:
            pytest.fail(f"fake {fake.name} names no setting that points Velvet at it")
        return {fake.setting: f"http://127.0.0.1:{_closed_port()}{fake.api_path}"}

    def all_unreachable(self) -> dict[str, str]:
        closed = f"http://127.0.0.1:{_closed_port()}"
        return {f.setting: closed + f.api_path for f in self.sandbox.fakes.values()
                if f.setting}

    def refused_credentials(self, fake: registry.Fake) -> dict[str, str]:
        """Velvet's own credentials at `fake` (the settings beside the one that points at it:
        VELVET_<NAME>_*, AWS_*), each replaced by one it never issued."""
        if fake.setting is None:
            pytest.fail(f"fake {fake.name} names no setting that points Velvet at it")
        prefix = re.sub(r"(API_URL|ENDPOINT_URL)$", "", fake.setting)
        wrong = {name: refused(value) for name, value in self.env.items()
                 if name.startswith(prefix) and CREDENTIAL_SETTING.search(name)}
        if not wrong:
            pytest.fail(f"fake {fake.name} gives Velvet no credentials to refuse")
        return wrong

    @contextmanager
    def faults(self, fake: registry.Fake, **spec: Any) -> Iterator[None]:
        """A fault injected through the fake's control API, cleared on the way out."""
        url = self.sandbox.control_url(fake.name) + "/faults"
        with httpx.Client(timeout=10.0) as control:
            control.post(url, json=spec).raise_for_status()
            try:
                yield
            finally:
                control.delete(url).raise_for_status()

    def raises(self, expected: type[VendorError] | type[InputError],
               call: Callable[[], object], *values: str) -> BaseException:
        """`call` raises `expected`, and its text holds neither `values` nor any value the
        sandbox ever issued."""
        with pytest.raises(expected) as caught:
            call()
        self.no_value_in(str(caught.value), repr(caught.value), values=values)
        return caught.value

    def no_value_in(self, *texts: str, values: Iterable[str] = ()) -> None:
        issued = [*self.sandbox.token_values(), *self.world.values.values(), *values]
        found = leaks([("text", t) for t in texts], issued)
        assert not found, f"a value in an adapter's words: {found}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused(value: str) -> str:
    """`value` with its last four characters changed (to digits: every token alphabet here
    has them), in its own shape: an AWS key's id stays and its secret goes wrong."""
    return value[:-4] + "".join("1" if c == "0" else "0" for c in value[-4:])


def label() -> str:
    return f"velvet-contract-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def _seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, World, Path]]:
    work = tmp_path_factory.mktemp("contract-world")
    with Sandbox(manifest=EVERY_KIND) as sandbox:
        yield sandbox, sandbox.seed_world(work), work


@pytest.fixture
def contract(_seeded: tuple[Sandbox, World, Path],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Contract]:
    sandbox, world, work = _seeded
    env = {**sandbox.env(work), "VELVET_BUDGET_TIME_SCALE": TIME_SCALE}
    ctx = Contract(sandbox, world, world.manifest(), env, monkeypatch, [])
    try:
        yield ctx
    finally:
        for wiring in ctx.wirings:
            wiring.close()


def waited_out(contract: Contract, call: Callable[[], T]) -> tuple[T, list[str]]:
    """`call` through the stage's RetryPolicy, its sleeps recorded rather than slept."""
    said: list[str] = []
    result = RetryPolicy(sleep=lambda _: None, say=said.append).run(call)
    contract.no_value_in(*said)
    return result, said


# --- vendors ----------------------------------------------------------------------------------


def test_verify_accepts_a_live_value_and_refuses_others(contract: Contract,
                                                        vendor_kind: str) -> None:
    issued = contract.issue(vendor_kind)
    vendor = contract.vendor(vendor_kind)
    live = SecretStr(issued.value)
    identity = vendor.verify(live)
    assert isinstance(identity, Identity)
    assert identity.subject
    contract.no_value_in(identity.subject, str(identity.auth_id))
    assert vendor.is_live(live)
    assert contract.fake("vendors", vendor_kind).is_live(issued.value)

    wrong = SecretStr(refused(issued.value))
    if vendor.CAN_PROBE:
        contract.raises(AuthRejected, lambda: vendor.verify(wrong), wrong.get_secret_value())
        assert not vendor.is_live(wrong)
    else:  # nothing but a person can prove a value dead; an empty one is no value
        assert vendor.is_live(wrong)
        contract.raises(AuthRejected, lambda: vendor.verify(SecretStr("")))


def test_mint_gives_a_second_independent_value(contract: Contract, vendor_kind: str) -> None:
    vendor = contract.vendor(vendor_kind)
    live = SecretStr(contract.issue(vendor_kind).value)
    name = label()
    if not vendor.CAN_MINT:
        contract.raises(InputError, lambda: vendor.mint(live, name))
        return
    minted = vendor.mint(live, name)
    try:
        assert minted.value.get_secret_value() != live.get_secret_value()
        for value in (live, minted.value):  # the overlap: both work until revoke
            assert vendor.is_live(value)
            assert contract.fake("vendors", vendor_kind).is_live(value.get_secret_value())
        vendor.verify(minted.value)
        assert minted.auth_id is not None
        # An interrupted mint resumes by finding its token under the job's label.
        assert vendor.find_minted(live, name) == minted.auth_id
        assert vendor.exists(minted.auth_id, using=live) in (True, None)
        used = vendor.last_used(minted.auth_id, using=live)
        if used is not None:
            contract.no_value_in(used.detail)
    finally:
        if vendor.CAN_REVOKE and minted.auth_id is not None:
            vendor.revoke(minted.auth_id, using=live, value=minted.value)


def test_revoke_kills_the_value_and_is_idempotent(contract: Contract, vendor_kind: str) -> None:
    vendor = contract.vendor(vendor_kind)
    live = SecretStr(contract.issue(vendor_kind).value)
    if not vendor.CAN_REVOKE:
        contract.raises(InputError, lambda: vendor.revoke(None, using=live, value=live))
        return
    if vendor.CAN_MINT:
        second = vendor.mint(live, label())
        auth_id, value = second.auth_id, second.value
    else:
        issued = contract.issue(vendor_kind)
        auth_id, value = issued.auth_id, SecretStr(issued.value)
    assert auth_id is not None
    assert vendor.revoke(auth_id, using=live, value=value) is True
    assert not contract.fake("vendors", vendor_kind).is_live(value.get_secret_value())
    if vendor.CAN_PROBE:
        assert not vendor.is_live(value)
    assert vendor.is_live(live)  # revoking one value leaves the other alone
    assert vendor.revoke(auth_id, using=live, value=value) is False  # already gone
    assert vendor.exists(auth_id, using=live) in (False, None)


def test_roll_and_regenerate_replace_a_value_in_place(contract: Contract,
                                                      vendor_kind: str) -> None:
    vendor = contract.vendor(vendor_kind)
    fake = contract.fake("vendors", vendor_kind)
    issued = contract.issue(vendor_kind)
    live = SecretStr(issued.value)
    if not vendor.CAN_ROLL:
        contract.raises(InputError, lambda: vendor.roll(issued.auth_id, live))
    else:
        rolled = vendor.roll(issued.auth_id, live)
        assert rolled.auth_id == issued.auth_id
        assert vendor.is_live(rolled.value)
        assert fake.is_live(rolled.value.get_secret_value())
        assert not fake.is_live(issued.value)  # killed at once: the revocation flow's move
        live = rolled.value
    if vendor.CAN_REGENERATE:
        name = label()
        minted = vendor.mint(live, name)
        assert minted.auth_id is not None
        recovered = vendor.recover_minted(live, minted.auth_id, name)
        assert recovered.auth_id == minted.auth_id
        assert vendor.is_live(recovered.value)
        assert not fake.is_live(minted.value.get_secret_value())  # the lost value dies
        if vendor.CAN_REVOKE:
            vendor.revoke(recovered.auth_id, using=live, value=recovered.value)


def test_an_unreachable_vendor_is_unavailable(contract: Contract, vendor_kind: str) -> None:
    fake = contract.fake("vendors", vendor_kind)
    live = SecretStr(contract.issue(vendor_kind).value)
    if fake.setting is None:
        # No API at all (operator_manual): with every fake out of reach it still answers.
        vendor = contract.vendor(vendor_kind, **contract.all_unreachable())
        assert vendor.verify(live).subject
        assert vendor.is_live(live)
        return
    vendor = contract.vendor(vendor_kind, **contract.unreachable(fake))
    contract.raises(VendorUnavailable, lambda: vendor.verify(live))
    contract.raises(VendorUnavailable, lambda: vendor.is_live(live))  # never "dead"


def test_vendor_faults_map_to_the_error_tree(contract: Contract, faultable_vendor: str) -> None:
    kind = faultable_vendor
    fake = contract.fake("vendors", kind)
    vendor = contract.vendor(kind)
    live = SecretStr(contract.issue(kind).value)
    with contract.faults(fake, status=503):
        contract.raises(VendorUnavailable, lambda: vendor.verify(live))
        contract.raises(VendorUnavailable, lambda: vendor.is_live(live))
        if vendor.CAN_MINT:
            contract.raises(VendorUnavailable, lambda: vendor.mint(live, label()))
    for retry_after in (1, None):  # as GitHub and Cloudflare say it, and as Heroku does not
        spec = {"status": 429, "times": 1, "retry_after": retry_after}
        with contract.faults(fake, **spec):
            error = contract.raises(RateLimited, lambda: vendor.verify(live))
            assert isinstance(error, RateLimited)
            assert error.retryable
        with contract.faults(fake, **spec):
            identity, said = waited_out(contract, lambda: vendor.verify(live))
        assert identity.subject
        assert [line for line in said if "rate limited" in line], said


# --- targets ----------------------------------------------------------------------------------


def _value() -> SecretStr:
    return SecretStr("contract-" + secrets.token_urlsafe(24))


def _deletes(target: Target) -> bool:
    return type(target).delete is not Target.delete


def test_a_write_is_shown(contract: Contract, target_kind: str) -> None:
    fake = contract.fake("targets", target_kind)
    wiring = contract.wiring()
    for config in contract.places(target_kind):
        target = wiring.target(config)
        value, since = _value(), datetime.now(UTC)
        target.write(value)
        target.write(value)  # idempotent
        assert fake.held(config) == value.get_secret_value(), config.describe()
        shown = target.shows(value, since)
        if target.READABLE:
            read = target.read()
            assert read is not None
            assert read.get_secret_value() == value.get_secret_value()
            assert target.fingerprint() == fingerprint(value)
        else:
            contract.raises(VendorError, target.read, value.get_secret_value())
        if shown is None:  # only a write-only kind may show nothing: a person confirms it
            assert not target.READABLE, f"{config.describe()} reads back, yet shows nothing"
            continue
        assert shown.held, (config.describe(), shown)
        contract.no_value_in(shown.evidence, values=[value.get_secret_value()])


def test_delete_removes_the_value(contract: Contract, target_kind: str) -> None:
    fake = contract.fake("targets", target_kind)
    wiring = contract.wiring()
    for config in contract.places(target_kind):
        target = wiring.target(config)
        if not _deletes(target):
            assert not target.CAN_BE_VAULT, f"{target_kind} can be a vault but cannot delete"
            with pytest.raises(NotImplementedError):
                target.delete()
            continue
        value, since = _value(), datetime.now(UTC)
        target.write(value)
        target.delete()
        assert fake.held(config) is None, config.describe()
        if target.READABLE:
            assert target.read() is None
        shown = target.shows(value, since)
        assert shown is None or not shown.held, (config.describe(), shown)


def test_probe_changes_nothing(contract: Contract, target_kind: str) -> None:
    fake = contract.fake("targets", target_kind)
    wiring = contract.wiring()
    for config in contract.places(target_kind):
        before = fake.held(config)
        described = wiring.target(config).probe()
        assert described
        contract.no_value_in(described)
        assert fake.held(config) == before, config.describe()


def _write_fails(contract: Contract, kind: str, settings: dict[str, str],
                 expected: type[VendorError]) -> None:
    """With `settings` over the sandbox's, a write to every place of `kind` raises `expected`
    and changes nothing there."""
    fake = contract.fake("targets", kind)
    wiring = contract.wiring(**settings)
    for config in contract.places(kind):
        before, value = fake.held(config), _value()
        target = wiring.target(config)
        contract.raises(expected, partial(target.write, value), value.get_secret_value())
        assert fake.held(config) == before, config.describe()


def test_refused_credentials_are_auth_rejected(contract: Contract, target_kind: str) -> None:
    refused_settings = contract.refused_credentials(contract.fake("targets", target_kind))
    _write_fails(contract, target_kind, refused_settings, AuthRejected)


def test_an_unreachable_target_is_unavailable(contract: Contract, target_kind: str) -> None:
    unreachable = contract.unreachable(contract.fake("targets", target_kind))
    _write_fails(contract, target_kind, unreachable, VendorUnavailable)


def test_target_faults_map_to_the_error_tree(contract: Contract, faultable_target: str) -> None:
    kind = faultable_target
    fake = contract.fake("targets", kind)
    config = contract.places(kind)[0]
    target = contract.wiring().target(config)
    before, value = fake.held(config), _value()
    with contract.faults(fake, status=503):
        contract.raises(VendorUnavailable, lambda: target.write(value), value.get_secret_value())
    assert fake.held(config) == before
    for retry_after in (1, None):
        with contract.faults(fake, status=429, times=1, retry_after=retry_after):
            _, said = waited_out(contract, lambda: target.write(value))
        assert [line for line in said if "rate limited" in line], said
        assert fake.held(config) == value.get_secret_value()

    # A write acknowledged but not stored is not shown (the probe first: logins, keys).
    target = contract.wiring().target(config)
    target.probe()
    dropped, since = _value(), datetime.now(UTC)
    with contract.faults(fake, drop=True):
        target.write(dropped)
    assert fake.held(config) == value.get_secret_value()
    shown = target.shows(dropped, since)
    assert shown is not None, f"{config.describe()} shows nothing of a write"
    assert not shown.held, shown
    contract.no_value_in(shown.evidence, values=[dropped.get_secret_value()])


# --- the parametrisation follows the registries -----------------------------------------------

LATECOMERS = '''
"""A vendor and a target registered after the built-ins, with no fake: as a new module is."""
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from velvet_runner.manifest_models import Model, TargetConfig
from velvet_runner.targets import register as register_target
from velvet_runner.targets.base import Target
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor


class LatecomerVendor(Vendor):
    kind: ClassVar[str] = "latecomer"
    options_model: ClassVar[type[Model]] = Model

    @classmethod
    def build(cls, config: Any, supplies: Any) -> "LatecomerVendor":
        return cls()

    def verify(self, value: SecretStr) -> Identity:
        return Identity(subject="latecomer")


class LatecomerPlace(TargetConfig):
    kind: Literal["latecomer_place"] = Field(description="A place.")


class LatecomerTarget(Target):
    kind: ClassVar[str] = "latecomer_place"
    config_model: ClassVar[type[TargetConfig]] = LatecomerPlace

    @classmethod
    def build(cls, config: Any, supplies: Any) -> "LatecomerTarget":
        return cls()

    def write(self, value: SecretStr) -> None:
        pass

    def read(self) -> SecretStr | None:
        return None

    def probe(self) -> str:
        return "latecomer"


register(LatecomerVendor)
register_target(LatecomerTarget)
'''


# What the child collected, before -k deselects: every id, one a line, to $LATECOMERS_IDS.
COLLECTED = """
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    with open(os.environ["LATECOMERS_IDS"], "w", encoding="utf-8") as out:
        out.writelines(item.nodeid + "\\n" for item in items)
"""


def test_every_registered_kind_is_in_the_parametrisation(tmp_path: Path) -> None:
    """A vendor and a target registered by a module this file never names are collected into
    every case (a child pytest of this file, the module loaded as a plugin), and their missing
    fake fails the suite instead of being skipped."""
    (tmp_path / "latecomers.py").write_text(
        textwrap.dedent(LATECOMERS) + COLLECTED, encoding="utf-8")
    ids_file = tmp_path / "ids.txt"
    env = {**os.environ, "LATECOMERS_IDS": str(ids_file), "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "latecomers", "-p", "no:cacheprovider", "-q",
         str(Path(__file__)), "-k", "latecomer and (verify_accepts or a_write_is_shown)"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT)

    by_test: dict[str, set[str]] = {}
    for test, kind in re.findall(r"::(\w+)\[(\w+)\]", ids_file.read_text(encoding="utf-8")):
        by_test.setdefault(test, set()).add(kind)
    vendors = {*load_vendors(), "latecomer"}
    targets = {*load_targets(), "latecomer_place"}
    expected = {"vendor_kind": vendors, "target_kind": targets,
                "faultable_vendor": {"latecomer", *_faultable("vendors", load_vendors())},
                "faultable_target": {"latecomer_place", *_faultable("targets", load_targets())}}
    parametrised = 0
    for name, fn in globals().items():
        argument = next((a for a in KINDS if name.startswith("test_")
                         and a in fn.__code__.co_varnames), None)
        if argument is not None:
            parametrised += 1
            assert by_test.get(name) == expected[argument], (name, by_test.get(name))
    assert parametrised >= 10

    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 failed" in run.stdout, run.stdout
    assert "skipped" not in run.stdout
    assert "no fake registers the vendor kind latecomer" in run.stdout
    assert "no fake registers the target kind latecomer_place" in run.stdout


def test_the_scan_of_adapters_words_finds_a_value(contract: Contract) -> None:
    """The scan every case puts exception text through finds a value when there is one."""
    value = next(iter(contract.world.values.values()))
    with pytest.raises(AssertionError, match=tag(value)):
        contract.no_value_in(f"oops {value}")
