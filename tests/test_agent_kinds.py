"""The kinds of agent are listed once (engine/workspace/agent_kinds.py); the config, the command
line and the registry all read that list."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from ratchet.cli.main import build_parser
from ratchet.engine.agents import registry
from ratchet.engine.agents.claude.agent import ClaudeAgent
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.workspace import agent_kinds as kinds
from ratchet.engine.workspace import config as configmod


def test_every_kind_has_its_settings_table():
    assert {f.name for f in fields(configmod.AgentConfig)} - {"kind"} == {
        kind.field for kind in kinds.KINDS.values()}
    assert configmod.AgentConfig().kind == kinds.DEFAULT
    assert kinds.KINDS[kinds.DEFAULT].api_key is None


def test_the_command_line_offers_the_kinds():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    (agent,) = [a for a in run._actions if "--agent" in a.option_strings]
    assert tuple(agent.choices) == kinds.NAMES


@pytest.mark.parametrize("name", kinds.NAMES)
def test_config_accepts_each_kind(name):
    config = configmod.Config()
    config.agent.kind = name
    configmod.validate(config)


def test_registry_builds_each_kind(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    config = configmod.Config()
    config.experiment.seed = 7
    offline = registry.create("offline", config)
    assert isinstance(offline, OfflineAgent) and offline.seed == 7
    assert isinstance(registry.create("claude", config), ClaudeAgent)
    with pytest.raises(registry.AgentUnavailable, match="unknown agent 'gpt'"):
        registry.create("gpt", config)


def test_a_kind_without_its_key_falls_back(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = configmod.Config()
    config.agent.kind = "claude"
    assert registry.default_kind(config) == kinds.DEFAULT
    with pytest.raises(registry.AgentUnavailable) as info:
        registry.create("claude", config)
    assert str(info.value) == ("--agent claude needs ANTHROPIC_API_KEY; without it use "
                               "--agent offline")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    assert registry.default_kind(config) == "claude"


def test_reading_the_config_loads_no_agent():
    code = "import sys, ratchet.engine.workspace.config\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = done.stdout.split()
    assert "ratchet.engine.workspace.agent_kinds" in loaded  # the names it checks against
    assert [m for m in loaded if m.startswith("ratchet.engine.agents")] == []
    assert not [m for m in loaded if m.split(".")[0] in ("optuna", "anthropic", "git")]
