"""The dependency rules of the layout, read from every import statement in the source.

- model/ (the workspace template) imports nothing of Ratchet: it runs alone in a workspace.
- The engine never imports the dashboard or the command line.
- The dashboard imports only itself and the engine's protocol subpackage.
- The protocol imports nothing else of Ratchet.
- The loop knows no agent SDK or search library: agents sit behind one interface.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"cli": "ratchet.cli", "engine": "ratchet.engine", "model": "ratchet.model",
            "tui": "ratchet.tui", "prompts": "ratchet.prompts"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth (lazy ones too)."""
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _violations(folder: str, allowed) -> list[str]:
    bad = []
    for path in _sources(folder):
        for name in sorted(_imports(path)):
            if name.startswith("ratchet") and not allowed(name):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def _under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_module_parser_sees_lazy_and_relative_imports(tmp_path):
    # the rules below are only as good as this reader of imports
    sample = ROOT / "tui" / "app.py"
    assert "ratchet.engine.protocol.control" in _imports(sample)
    launch = _imports(ROOT / "cli" / "session_commands.py")
    assert "ratchet.tui.launch" in launch  # imported inside a function


def test_model_imports_nothing_of_ratchet():
    assert _sources("model")
    assert _violations("model", lambda name: False) == []


def test_engine_never_imports_the_dashboard_or_the_command_line():
    assert _violations("engine", lambda name: not _under(name, "ratchet.tui", "ratchet.cli")) \
        == []


def test_dashboard_imports_only_the_protocol():
    assert _violations("tui", lambda name: _under(
        name, "ratchet.tui", "ratchet.engine.protocol") or name in ("ratchet", "ratchet.engine")) \
        == []


def test_protocol_imports_nothing_else_of_ratchet():
    assert _violations("engine/protocol", lambda name: _under(
        name, "ratchet.engine.protocol") or name in ("ratchet", "ratchet.engine")) == []


@pytest.mark.parametrize("sdk", ["anthropic", "optuna", "ray"])
def test_the_loop_knows_no_sdk(sdk):
    for path in _sources("engine/loop"):
        assert not any(_under(name, sdk) for name in _imports(path)), path


def test_opening_the_dashboard_imports_no_git_and_no_loop():
    code = ("import sys, ratchet.tui.app, ratchet.tui.launch, ratchet.tui.replay_app\n"
            "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = done.stdout.split()
    engine = [m for m in loaded if _under(m, "ratchet.engine")]
    assert "ratchet.engine.protocol.events" in engine  # the reader is really there
    assert [m for m in engine if not _under(m, "ratchet.engine.protocol")
            and m != "ratchet.engine"] == []
    assert not [m for m in loaded if _under(m, "git", "anthropic", "optuna")]
