"""A training run's loss curve, thinned to a few points for its exp_end record.

The agents compare runs by their curves (loss at fixed fractions of the budget); the whole
train_log stays in the experiment's folder, so the record keeps only what that comparison needs.
"""

from __future__ import annotations

POINTS = 24


def thin(train_log: list[dict], budget_seconds: float, points: int = POINTS) -> list[list[float]]:
    """[[elapsed, step, loss], ...]: the logged step nearest each of `points` even fractions of
    the budget, and the last one; records without a numeric loss or elapsed are skipped."""
    usable = [r for r in train_log if _number(r.get("loss")) and _number(r.get("elapsed"))]
    if not usable:
        return []
    span = budget_seconds if budget_seconds > 0 else float(usable[-1]["elapsed"]) or 1.0
    chosen: list[dict] = []
    index = 0
    for k in range(1, points + 1):
        target = span * k / points
        while index + 1 < len(usable) and float(usable[index + 1]["elapsed"]) <= target:
            index += 1
        if not chosen or chosen[-1] is not usable[index]:
            chosen.append(usable[index])
    if chosen[-1] is not usable[-1]:
        chosen.append(usable[-1])
    return [[round(float(r["elapsed"]), 3), int(r.get("step") or 0), round(float(r["loss"]), 5)]
            for r in chosen]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
