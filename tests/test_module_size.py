"""No module of Ratchet outside the tests is over 400 lines: past that a module holds more than
one thing, and is split where its parts meet."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("cli", "engine", "model", "tui", "prompts", "bench")
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    sources = [p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
               if "__pycache__" not in p.parts]
    assert len(sources) > 100  # the folders are really read
    long = {str(p.relative_to(ROOT)): n for p in sources
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
