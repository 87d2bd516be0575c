"""Whether a proposal's new file contents can become a candidate at all.

Checked before anything is committed or trained: only editable files, something changed, Python
that compiles, and more than a reseed (a new seed is noise, never research).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def refusal(files: dict[str, str], current: dict[str, str], editable: Iterable[str]) -> str:
    """Why these new file contents cannot be a candidate, or '' if they can."""
    allowed = set(editable)
    outside = sorted(set(files) - allowed)
    if outside:
        return f"edits files outside {sorted(allowed)}: {outside}"
    changed = changed_files(files, current)
    if not changed:
        return "the proposal changes nothing"
    for name, text in changed.items():
        if name.endswith(".py"):
            try:
                compile(text, name, "exec")
            except SyntaxError as exc:
                return f"{name} does not compile: {exc.msg} (line {exc.lineno})"
    if only_seed_changes(current, changed):
        return "the proposal only changes a seed, which is never an improvement"
    return ""


def changed_files(files: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in files.items() if current.get(k) != v}


def only_seed_changes(old_files: dict[str, str], changed: dict[str, str]) -> bool:
    """True when every changed line mentions a seed: reseeding is noise, not research."""
    for name, text in changed.items():
        old = old_files.get(name, "").splitlines()
        for line in difflib.unified_diff(old, text.splitlines(), lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            if line[1:].strip() and "seed" not in line.lower():
                return False
    return True
