"""The command line and environment Ratchet runs the `claude` CLI with.

Non-interactive (`--print`, the prompt on stdin), its JSON stream on stdout, and only the file
tools: no shell, no web, no MCP servers, no slash commands. Edits inside its folder are accepted
without asking (`acceptEdits`); no tool is allowed outright, since an allow rule for `Read` would
let it read anywhere (the corpus cache, the validation text): outside its folder every read and
write needs a permission that a non-interactive run never grants. Telemetry, error reports and
updates are off, so the only host it talks to is the Messages API (ANTHROPIC_BASE_URL where that
is set).
"""

from __future__ import annotations

import os

from ratchet.engine.workspace.config import ClaudeCodeConfig

TOOLS = "Read,Edit,Write,Glob,Grep"  # reading and editing files, nothing that runs or fetches
DENIED = "Bash,WebFetch,WebSearch,Task,NotebookEdit"
QUIET = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
         "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
         "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1"}


def argv(settings: ClaudeCodeConfig, system: str) -> list[str]:
    args = [settings.command, "--print", "--output-format", "stream-json", "--verbose",
            "--tools", TOOLS, "--disallowedTools", DENIED,
            "--permission-mode", "acceptEdits", "--strict-mcp-config",
            "--disable-slash-commands", "--no-session-persistence",
            "--append-system-prompt", system]
    if settings.model:
        args += ["--model", settings.model]
    if settings.max_budget_usd:
        args += ["--max-budget-usd", f"{settings.max_budget_usd:g}"]
    return args


def environment() -> dict[str, str]:
    """This process's environment (the CLI's login, ANTHROPIC_BASE_URL) with the quiet flags."""
    return {**os.environ, **QUIET}
