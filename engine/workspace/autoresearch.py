"""What Ratchet reads from an autoresearch checkout's files without running them: the training
budget its prepare.py sets. Both driving a checkout (`runner/compat.py`) and importing its
results (`importer`) need it."""

from __future__ import annotations

import ast


def time_budget(prepare_source: str) -> float | None:
    """prepare.py's `TIME_BUDGET = <number>`, or None when it is not a plain constant."""
    try:
        tree = ast.parse(prepare_source)
    except SyntaxError:
        return None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else getattr(node, "target", None) if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "TIME_BUDGET":
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
            return None
    return None
