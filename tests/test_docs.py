"""The README is a first hour's read, and every page of the depth is reachable from it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _links(page: Path) -> set[Path]:
    return {(page.parent / target).resolve() for target, _ in LINK.findall(page.read_text())
            if "://" not in target and not target.startswith("mailto:")}


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


def test_every_docs_page_is_linked_from_the_readme():
    linked = _links(ROOT / "README.md")
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert pages
    assert [p.name for p in pages if p.resolve() not in linked] == []


def test_every_relative_link_in_the_docs_resolves():
    broken = [f"{page.relative_to(ROOT)} -> {target.relative_to(ROOT)}"
              for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
              for target in _links(page) if not target.exists()]
    assert broken == []


def test_the_module_map_names_every_subpackage_and_module():
    # the top folders' modules and the engine's layers' modules by name; deeper folders (a
    # pane per file, an agent's own files) by the folder
    doc = (ROOT / "docs" / "development.md").read_text()
    unnamed = []
    for folder in ("cli", "engine", "tui", "model", "prompts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            if path.name == "__init__.py":
                if f"{rel.parent.name}/`" not in doc:
                    unnamed.append(f"{rel.parent.as_posix()}/")
            elif (len(rel.parts) == 2 or (rel.parts[0] == "engine" and len(rel.parts) == 3)) \
                    and f"`{path.stem}`" not in doc and f"`{path.name}`" not in doc:
                unnamed.append(rel.as_posix())
    assert unnamed == [], "\n".join(unnamed)
