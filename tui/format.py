"""Small text formatting shared by the panes."""

from __future__ import annotations


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
    "baseline": "blue",
    "discard": "yellow",
    "near miss": "yellow",
    "confirming": "magenta",
    "confirmed": "green",
    "unconfirmed": "yellow",
    "running": "bold cyan",
    "proposing": "cyan",
    "crash": "bold red",
    "timeout": "red",
    "over_budget": "red",
    "over_limit": "red",
    "killed": "red",
    "interrupted": "red",
    "failed": "red",
}
