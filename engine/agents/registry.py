"""Build the agent a session asked for; the only place that knows every agent by name."""

from __future__ import annotations

import os

from ratchet.engine.agents.base import Agent
from ratchet.engine.workspace.config import Config

KINDS = ("offline", "claude")


class AgentUnavailable(Exception):
    """The requested agent cannot run here; one line for the user."""


def default_kind(config: Config) -> str:
    """The configured agent, or offline where Claude has no API key."""
    if config.agent.kind == "claude" and not os.environ.get("ANTHROPIC_API_KEY"):
        return "offline"
    return config.agent.kind


def create(kind: str, config: Config) -> Agent:
    if kind == "offline":
        from ratchet.engine.agents.offline.agent import OfflineAgent

        return OfflineAgent(seed=config.experiment.seed)
    if kind == "claude":
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise AgentUnavailable("--agent claude needs ANTHROPIC_API_KEY; without it use "
                                   "--agent offline")
        from ratchet.engine.agents.claude.agent import ClaudeAgent

        return ClaudeAgent(config)
    raise AgentUnavailable(f"unknown agent {kind!r} (known: {', '.join(KINDS)})")
