"""Golden-file comparison for rendered rulesets, with a unified diff on mismatch.

``assert_golden(actual, path)`` compares normalised text with the file at ``path``. Run the tests
with ``PYNET_UPDATE_GOLDEN=1`` to (re)write the files instead; review the diff in git before
committing. Normalisation only removes noise that carries no meaning (trailing blanks, blank lines,
runs of spaces), so a golden file still reads as the exact ruleset.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

__all__ = ["UPDATE_ENV", "assert_golden", "normalise_nft"]

UPDATE_ENV = "PYNET_UPDATE_GOLDEN"


def normalise_nft(text: str) -> str:
    """Strip trailing blanks and blank lines and collapse runs of spaces.

    >>> normalise_nft("add  rule ip pynet x   accept  \\n\\n")
    'add rule ip pynet x accept\\n'
    """
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
    return "".join(line + "\n" for line in lines if line)


def assert_golden(actual: str, path: Path, *, normalise: bool = True) -> None:
    text = normalise_nft(actual) if normalise else actual
    if os.environ.get(UPDATE_ENV):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; run with {UPDATE_ENV}=1 to create it")
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"{path} (expected)", tofile="actual",
        ))
        raise AssertionError(f"ruleset differs from {path.name}:\n{diff}")
