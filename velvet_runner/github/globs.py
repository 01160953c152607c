"""GitHub's path and ref patterns as regular expressions: `*` and `?` never cross a `/`, `**`
does (Ruby's File.fnmatch for ref patterns, gitignore's rules for CODEOWNERS). One reading,
shared by doctor's CODEOWNERS check and the GitHub fake's branch policies and rulesets."""

from __future__ import annotations

import re


def glob_regex(pattern: str) -> str:
    """The regular expression (unanchored) for `pattern`."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return regex
