"""results.tsv in autoresearch's columns: commit, val_bpb, memory_gb, status, description."""

from __future__ import annotations

import os
from pathlib import Path

COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")
# What Ratchet adds to a description in its own rows (the loop's `ledger` writes them, an import
# reads them back): a candidate's further run, and a run confirmed again after the best moved
CONFIRM = "confirm: "
AGAIN = " (the best moved; confirming again)"


def cells(commit: str, val_bpb: float | None, memory_mb: float, status: str,
          description: str) -> tuple[str, ...]:
    """A row's text, column by column; crashes are 0.000000 as autoresearch writes them."""
    clean = " ".join(description.split())  # tabs or newlines would break the columns
    return (commit[:7], f"{val_bpb:.6f}" if val_bpb is not None else "0.000000",
            f"{memory_mb / 1024:.1f}", status, clean)


def append(path: Path, commit: str, val_bpb: float | None, memory_mb: float, status: str,
           description: str) -> None:
    """One row per finished experiment."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(cells(commit, val_bpb, memory_mb, status, description)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite(path: Path, lines: list[str]) -> None:
    """Replace the file by these lines (header included) at once: a kill leaves the old or
    the new file, never half of one."""
    spare = path.with_name(path.name + ".new")
    with open(spare, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(spare, path)


def read(path: Path) -> list[dict[str, str]]:
    """Rows as dicts keyed by header name (extra columns kept, short rows padded)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = line.split("\t")
        cells += [""] * (len(header) - len(cells))
        rows.append(dict(zip(header, cells, strict=False)))
    return rows
