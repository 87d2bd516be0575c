"""Ratchet's own instructions to the agents: their system prompts. The workspace's program.md,
which the person edits to steer the agent, is a template file in ratchet.model."""

from importlib import resources


def text(name: str) -> str:
    """A system prompt by its file name, e.g. claude_system.md."""
    return resources.files(__name__).joinpath(name).read_text()
