"""What a session's noise is and what effect it can detect, from its log alone.

The status line, `ratchet status` and `report` say it, so that a user can tell a kept change
from luck and knows how small a real gain can be and still be found.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ratchet.engine.loop import keep_rule
from ratchet.engine.protocol.state import LoopState


@dataclass(frozen=True)
class Noise:
    rule: str  # paired or margin
    spread: float | None  # one run's spread across the baseline's seeds (val_bpb)
    sigma: float | None  # paired: the noise of one paired difference; margin: the spread
    df: int  # the degrees of freedom behind sigma
    detectable: float | None  # paired: the gain kept about 4 times in 5; margin: its margin

    def line(self) -> str:
        """One line: 'noise ±0.0123 (paired, 7 df), detects gains of 0.0250'."""
        if self.sigma is None or self.detectable is None:
            return "noise: not measured yet (the baseline's seeds measure it)"
        return (f"noise ±{self.sigma:.4f} ({self.rule}, {self.df} df), detects gains of "
                f"{self.detectable:.4f}")


def of(state: LoopState) -> Noise:
    """The session's noise as its log says (the rule it ran with, from its session_start)."""
    config = state.config if isinstance(state.config, dict) else {}
    loop, ex = config.get("loop") or {}, config.get("experiment") or {}
    rule = loop.get("rule", "margin")  # a session from before the paired rule used the margin
    min_improvement = float(ex.get("min_improvement", 0.0) or 0.0)
    spread = statistics.stdev(state.baseline) if len(state.baseline) >= 2 else None
    if rule == "paired":
        if spread is None and not any(len(d) >= 2 for d in state.paired):
            return Noise(rule, None, None, 0, None)
        sigma, df = keep_rule.paired_noise(state.baseline, state.paired)
        runs = max(2, len(state.best_runs))
        return Noise(rule, spread, sigma, df,
                     max(min_improvement, keep_rule.detectable(sigma, df, runs)))
    if spread is None:
        return Noise(rule, None, None, 0, None)
    margin = keep_rule.margin(state.baseline, min_improvement, float(loop.get("noise_k", 2.0)))
    return Noise(rule, spread, spread, len(state.baseline) - 1, margin)
