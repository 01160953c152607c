"""Git tree objects as the state branch's writer and readers build and parse them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from velvet_runner.gitobjects import TREE_MODE, parse_tree, tree_body

MODES = st.sampled_from([b"100644", b"100755", b"120000", TREE_MODE, b"160000"])
NAMES = st.text(st.characters(blacklist_characters="\0/", blacklist_categories=("Cs",)),
                min_size=1, max_size=40)


@given(st.sampled_from([20, 32]).flatmap(lambda width: st.tuples(st.just(width), st.dictionaries(
    NAMES, st.tuples(MODES, st.binary(min_size=width, max_size=width).map(bytes.hex)),
    max_size=30))))
def test_a_tree_reads_back_as_it_was_written(case: tuple[int, dict[str, tuple[bytes, str]]]
                                             ) -> None:
    """Whatever the names (spaces, digits, any character but NUL and /) and object ids (any
    bytes, NUL and digits included), a tree body parses back to its entries."""
    width, entries = case
    assert parse_tree(tree_body(entries), width) == entries


def test_a_tree_reads_as_git_lists_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    blob = subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-w", "--stdin"],
                          input=b"x", capture_output=True, check=True).stdout.decode().strip()
    listing = "".join(f"100644 blob {blob}\t{name}\n" for name in ("a b.json", "0", "ü.txt"))
    tree = subprocess.run(["git", "--git-dir", str(repo), "mktree"], input=listing.encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    raw = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "tree", tree],
                         capture_output=True, check=True).stdout
    assert parse_tree(raw, 20) == {name: (b"100644", blob) for name in ("a b.json", "0", "ü.txt")}
    assert parse_tree(None, 20) == {}
    assert parse_tree(b"", 20) == {}
