"""Small text formatting shared by the panes."""

from __future__ import annotations

import re

from ratchet.engine.protocol import schema

_CHANGE = re.compile(r"^([A-Z][A-Z0-9_]*)( \S+ -> .*)$")  # "WARMUP_RATIO 0.0 -> 0.05"


def bpb(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def effect(value: float, se: float) -> str:
    """A paired effect and its standard error in 10 cells: -.031±.012 (no leading zeros)."""
    def short(x: float, sign: str) -> str:
        text = f"{x:{sign}.3f}"
        return text.replace("0.", ".", 1) if abs(x) < 1 else text
    return f"{short(value, '+')}±{short(se, '')}"


def abbreviate(text: str, width: int) -> str:
    """The text in at most `width` cells, keeping its end, where a change says its new value:
    rows that differ only there stay distinct. A "NAME old -> new" change shortens the name
    first (WARM…ATIO 0.0 -> 0.05); anything else loses its middle."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[len(text) - width:] if width > 0 else ""
    change = _CHANGE.match(text)
    if change and width - len(change.group(2)) >= 3:  # a letter, the ellipsis and a letter
        name, rest = change.groups()
        keep = width - len(rest) - 1
        head = (keep + 1) // 2
        return name[:head] + "…" + name[len(name) - (keep - head):] + rest
    head = (width - 1) // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def bar(done: float, total: float, width: int) -> str:
    """A progress bar of `width` cells, in block characters that read in 16 colours."""
    frac = max(0.0, min(1.0, done / total)) if total > 0 else 0.0
    filled = int(round(frac * width))
    return "█" * filled + "░" * (width - filled)


STATUS_STYLES = {
    "keep": "bold green",
    schema.BASELINE: "blue",
    "discard": "yellow",
    "near miss": "yellow",
    "confirming": "magenta",
    schema.CONFIRMED: "green",
    schema.UNCONFIRMED: "yellow",
    schema.RUNNING: "bold cyan",
    schema.PHASE_PROPOSING: "cyan",
    schema.CRASHED: "bold red",
    schema.TIMEOUT: "red",
    schema.OVER_BUDGET: "red",
    schema.OVER_LIMIT: "red",
    schema.KILLED: "red",
    schema.INTERRUPTED: "red",
    "stopped": "yellow",
    schema.FAILED: "red",
}
