"""The keep rules, by the name ratchet.toml's `[loop] rule` gives them.

A rule is one class (`base.Rule`); this registry is the only other place that names it. The
scheduler asks `create` for the session's rule and never asks which one it got.
"""

from __future__ import annotations

from ratchet.engine.loop.rules.base import Rule, Settings
from ratchet.engine.loop.rules.margin import MarginRule
from ratchet.engine.loop.rules.paired import PairedRule
from ratchet.engine.workspace.config import Config

RULES: dict[str, type[Rule]] = {rule.name: rule for rule in (PairedRule, MarginRule)}


def register(rule: type[Rule]) -> None:
    """Offer another rule under its name (a plug-in, or a test's)."""
    RULES[rule.name] = rule


def create(config: Config) -> Rule:
    """The session's rule, with its settings from the configuration."""
    ex, loop = config.experiment, config.loop
    if loop.rule not in RULES:
        raise ValueError(f"[loop] rule must be one of {', '.join(RULES)}, got {loop.rule!r}")
    return RULES[loop.rule](Settings(seed=ex.seed, min_improvement=ex.min_improvement,
                                     noise_k=loop.noise_k, confirm=loop.confirm))
