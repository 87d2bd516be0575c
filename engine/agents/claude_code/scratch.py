"""The folder Claude Code works in: a copy of the editable files, the past experiments to read,
and the journal to write; nothing else of the workspace, so its edit tools reach nothing else.
Earlier sessions' experiments and notes are there too: `experiments/<session>/exp-NNNN.txt`
and `experiments/<session>/journal.md`.

Ratchet reads back only the editable files (the engine checks and commits them) and the notes
added to journal.md; the folder is removed after the proposal.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ratchet.engine.agents import archive
from ratchet.engine.agents.base import Context

JOURNAL = "journal.md"
EXPERIMENTS = "experiments"
NOTE_CHARS = 2000


class Scratch:
    def __init__(self, context: Context, editable: list[str]):
        self.root = Path(tempfile.mkdtemp(prefix="ratchet-claude-code-")).resolve()
        self.editable = list(editable)
        # None: an editable file the workspace does not have yet, which the CLI may create
        self.original: dict[str, str | None] = {name: context.files.get(name)
                                                for name in self.editable}
        for name, text in self.original.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if text is not None:
                path.write_text(text, encoding="utf-8")
        folder = self.root / EXPERIMENTS
        folder.mkdir()
        for entry in context.history:
            (folder / f"exp-{entry.n:04d}.txt").write_text(archive.view(entry), encoding="utf-8")
        for entry in context.earlier:  # memory across sessions, a folder per earlier session
            where = folder / _folder_name(entry.session)
            where.mkdir(exist_ok=True)
            (where / f"exp-{entry.n:04d}.txt").write_text(archive.view(entry), encoding="utf-8")
        for note in context.earlier_journal:
            where = folder / _folder_name(note.session)
            where.mkdir(exist_ok=True)
            with open(where / JOURNAL, "a", encoding="utf-8") as f:
                f.write(f"[exp {note.exp}] {note.text.strip()}\n\n")
        self.journal_before = "".join(f"[exp {note.exp}] {note.text.strip()}\n\n"
                                      for note in context.journal)
        (self.root / JOURNAL).write_text(self.journal_before, encoding="utf-8")

    def changed(self) -> dict[str, str]:
        """The editable files whose text differs from the copy handed over."""
        out = {}
        for name, before in self.original.items():
            path = self.root / name
            if path.is_symlink() or not path.is_file():
                continue  # never followed: only a plain file written in place counts
            text = path.read_text(encoding="utf-8", errors="replace")
            if text != before:
                out[name] = text
        return out

    def take_notes(self) -> list[str]:
        """Paragraphs of journal.md that were not there before (or at the last call), in
        order: each is a note for the session's journal."""
        path = self.root / JOURNAL
        if path.is_symlink() or not path.is_file():
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
        before = set(_paragraphs(self.journal_before))
        self.journal_before = text
        return [p[:NOTE_CHARS] for p in _paragraphs(text) if p not in before]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _folder_name(session: str) -> str:
    """A session id as one plain folder name (ids are folder names under runs/ already)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in session).lstrip(".")
    return name or "_"


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]
