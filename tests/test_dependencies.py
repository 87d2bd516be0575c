"""The dependency rules of the layout, read from every import statement in the source.

- model/ (the workspace template) imports nothing of Ratchet: it runs alone in a workspace.
- The engine is layered, lowest first: protocol < data < workspace < runner < workers < agents
  < loop. A module imports only its own subpackage or lower ones (ratchet.prompts, the agents'
  system prompts, counts as the agents'); never the dashboard, the command line or model/.
- The dashboard imports only itself and the engine's protocol subpackage; cli/ may import all.
- No two modules of Ratchet import each other, however indirectly.
- The loop knows no agent SDK or search library: agents sit behind one interface. Neither the
  loop nor the dashboard imports torch or ray: training runs in child processes and workers.

Every rule counts lazy imports (inside functions) too.
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
LAYERS = ("protocol", "data", "workspace", "runner", "workers", "agents", "loop")


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


def _layer(name: str) -> int | None:
    """Where a module of the engine (or ratchet.prompts) sits in LAYERS; None elsewhere."""
    if _under(name, "ratchet.prompts"):
        return LAYERS.index("agents")
    parts = name.split(".")
    if parts[:2] != ["ratchet", "engine"] or len(parts) < 3:
        return None
    return LAYERS.index(parts[2]) if parts[2] in LAYERS else None


def test_every_engine_subpackage_has_its_layer():
    folders = {p.name for p in (ROOT / "engine").iterdir()
               if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(LAYERS)
    assert [p.name for p in (ROOT / "engine").glob("*.py")] == ["__init__.py"]


def test_the_engine_imports_only_its_own_layer_or_lower():
    bad = []
    for path in _sources("engine"):
        own = _layer(_module_name(path))
        for name in sorted(_imports(path)):
            if not name.startswith("ratchet") or name in ("ratchet", "ratchet.engine"):
                continue
            layer = _layer(name)
            if own is None or layer is None or layer > own:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def _graph() -> dict[str, set[str]]:
    """Every module of Ratchet and the modules of Ratchet it imports. `from pkg import name`
    counts as importing pkg.name only where that is a module: other names are left out."""
    paths = {_module_name(p): p for folder in PACKAGES for p in _sources(folder)}
    return {module: {name for name in _imports(path) if name in paths and name != module}
            for module, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    top = stack.pop()
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    graph = _graph()
    assert "ratchet.engine.loop.session" in graph  # the graph holds the modules
    assert "ratchet.engine.workers.pool" in graph["ratchet.engine.loop.session"]
    assert _cycles(graph) == []


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


@pytest.mark.parametrize("folder", ["tui", "engine/loop"])
def test_the_loop_and_the_dashboard_import_neither_torch_nor_ray(folder):
    assert _sources(folder)
    for path in _sources(folder):
        assert not any(_under(name, "torch", "ray") for name in _imports(path)), path


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
