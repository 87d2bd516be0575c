"""results.tsv in autoresearch's columns: commit, val_bpb, memory_gb, status, description."""

from __future__ import annotations

import os
from pathlib import Path

COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")


def append(path: Path, commit: str, val_bpb: float | None, memory_mb: float, status: str,
           description: str) -> None:
    """One row per finished experiment; crashes are 0.000000 as autoresearch writes them."""
    new = not path.exists() or path.stat().st_size == 0
    clean = " ".join(description.split())  # tabs or newlines would break the columns
    row = (commit[:7], f"{val_bpb:.6f}" if val_bpb is not None else "0.000000",
           f"{memory_mb / 1024:.1f}", status, clean)
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
