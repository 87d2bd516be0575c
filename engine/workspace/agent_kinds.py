"""Every kind of agent by name, and what it needs to run: the one list of them.

The kinds are part of ratchet.toml's format (`[agent] kind` names one, and each has its own
`[agent.<name>]` table), so the list lives with the config, in the workspace layer: the config's
reader checks `[agent] kind` against it, the command line offers it as the choices of `--agent`,
and the agents' registry builds agents from it. This module is plain data: the factories are
named as text and imported (by `agents/registry.py`) only when an agent is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # also its settings table: [agent.<name>] in ratchet.toml (attribute: `field`)
    factory: str  # "module:attribute", called with the Config to build the agent
    api_key: str | None = None  # environment variable it cannot run without

    @property
    def field(self) -> str:
        """Its settings' attribute of AgentConfig: the name as a Python identifier."""
        return self.name.replace("-", "_")

    def missing_key(self) -> str | None:
        """The environment variable this kind needs and this process lacks, if any."""
        return self.api_key if self.api_key and not os.environ.get(self.api_key) else None


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("offline", "ratchet.engine.agents.offline.agent:OfflineAgent.from_config"),
    Kind("claude", "ratchet.engine.agents.claude.agent:ClaudeAgent", api_key="ANTHROPIC_API_KEY"),
    # the `claude` CLI logs in its own way (a key, or a Claude account): no key required here
    Kind("claude-code", "ratchet.engine.agents.claude_code.agent:ClaudeCodeAgent"),
)}
NAMES = tuple(KINDS)
# The default, and the stand-in when the configured kind lacks its key: runs anywhere.
DEFAULT = next(kind.name for kind in KINDS.values() if kind.api_key is None)
