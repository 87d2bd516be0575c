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
