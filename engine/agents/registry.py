"""Build the agent a session asked for, from the table of kinds in `workspace/agent_kinds.py`."""

from __future__ import annotations

import importlib

from ratchet.engine.agents.base import Agent
from ratchet.engine.workspace.agent_kinds import DEFAULT, KINDS, NAMES
from ratchet.engine.workspace.config import Config

__all__ = ["DEFAULT", "NAMES", "AgentUnavailable", "create", "default_kind"]


class AgentUnavailable(Exception):
    """The requested agent cannot run here; one line for the user."""


def default_kind(config: Config) -> str:
    """The configured agent, or the default one where the configured one has no API key."""
    kind = KINDS.get(config.agent.kind)
    if kind is not None and kind.missing_key():
        return DEFAULT
    return config.agent.kind


def create(name: str, config: Config) -> Agent:
    kind = KINDS.get(name)
    if kind is None:
        raise AgentUnavailable(f"unknown agent {name!r} (known: {', '.join(NAMES)})")
    key = kind.missing_key()
    if key:
        raise AgentUnavailable(f"--agent {name} needs {key}; without it use --agent {DEFAULT}")
    # imported only now: building one agent must not load every other agent's SDK
    module, _, attribute = kind.factory.partition(":")
    factory = importlib.import_module(module)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    return factory(config)
