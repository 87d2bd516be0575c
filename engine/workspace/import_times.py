"""When each imported experiment ran, from commit times: autoresearch logs no timings.

An experiment runs from its own commit to the next one's. A session's baseline names a commit
made before the session (the checkout's, or the last session's best), often days older, so
its runs are placed in the steps just before the session's first own commit instead. Rows that
share a time (a candidate and its further runs, on one commit) share the span up to the next
time. A session's last experiment ends one typical step after it starts; the file's very last
one ends when autoresearch's run.log or the file itself was last written, where that is near.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

DEFAULT_STEP_S = 300.0  # autoresearch's budget: the step where nothing better is known
NEAR_STEPS = 3  # the file's own time ends the last experiment within this many steps of it
NEAR_S = 900.0  # ... or this many seconds
RUN_LOG = "run.log"  # where autoresearch's loop writes each run's output


def interpolate(times: list[float | None]) -> list[float | None]:
    """Fill gaps linearly between known times; ends beyond the known ones take a mean step."""
    known = [(i, t) for i, t in enumerate(times) if t is not None]
    if not known:
        return list(times)
    filled = list(times)
    step = ((known[-1][1] - known[0][1]) / (known[-1][0] - known[0][0])
            if len(known) > 1 and known[-1][0] != known[0][0] else DEFAULT_STEP_S)
    step = step if step > 0 else DEFAULT_STEP_S
    for i, t in enumerate(times):
        if t is not None:
            continue
        before = next(((j, u) for j, u in reversed(known) if j < i), None)
        after = next(((j, u) for j, u in known if j > i), None)
        if before and after:
            share = (i - before[0]) / (after[0] - before[0])
            filled[i] = before[1] + (after[1] - before[1]) * share
        elif before:
            filled[i] = before[1] + step * (i - before[0])
        else:
            filled[i] = after[1] - step * (after[0] - i)
    return filled


def file_times(tsv: Path) -> list[float]:
    """The times the last run ended by its files, best first: autoresearch's run.log (written
    as the run ends), then the results file (a row appended after it)."""
    found = []
    for path in (tsv.parent / RUN_LOG, tsv):
        try:
            found.append(path.stat().st_mtime)
        except OSError:
            continue
    return found


def timeline(commit_times: list[float | None], parts: Sequence[tuple[int, int]],
             ends_at: list[float], budget: float | None = None
             ) -> tuple[list[float], list[float]]:
    """Each row's start and end. `parts` holds each session's (rows, baseline rows) in file
    order; `ends_at` the file's own times (`file_times`); `budget` the checkout's training
    budget, the step where a session's commits give none."""
    n = len(commit_times)
    if not any(t is not None for t in commit_times):  # order is all we know
        end = ends_at[-1] if ends_at else 0.0
        starts = [end - DEFAULT_STEP_S * (n - i) for i in range(n)]
        return starts, starts[1:] + [end]
    filled: list[float] = interpolate(commit_times)  # type: ignore[assignment]
    cut, slices = 0, []
    for count, baselines in parts:
        slices.append((slice(cut, cut + count), min(baselines, count)))
        cut += count
    every = [s for span, b in slices for s in _steps(filled[span][b:])]
    fallback = statistics.median(every) if every else (budget or DEFAULT_STEP_S)
    starts, ends = [], []
    for k, (span, baselines) in enumerate(slices):
        times = filled[span]
        if not times:
            continue
        own = _steps(times[baselines:])
        step = statistics.median(own) if own else fallback
        begun, finished = _session(times, baselines, step,
                                   ends_at if k == len(slices) - 1 else [])
        starts += begun
        ends += finished
    return starts, ends


def _steps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False) if b > a]


def _session(times: list[float], baselines: int, step: float, ends_at: list[float]
             ) -> tuple[list[float], list[float]]:
    t = list(times)
    for i in range(baselines + 1, len(t)):  # rewritten history can misorder commit times
        t[i] = max(t[i], t[i - 1])
    if baselines < len(t):  # the baseline runs: the steps before the session's first commit
        first = t[baselines]
        for j in range(baselines):
            t[j] = min(first, max(t[j], first - (baselines - j) * step))
    for i in range(1, baselines):
        t[i] = max(t[i], t[i - 1])
    last = next((e for e in ends_at
                 if t[-1] < e <= t[-1] + max(NEAR_STEPS * step, NEAR_S)), t[-1] + step)
    # rows on one time share the span to the next time
    bounds = t + [last]
    i = 0
    while i < len(t):
        k = i
        while k + 1 < len(t) and t[k + 1] == t[i]:
            k += 1
        width = (bounds[k + 1] - t[i]) / (k - i + 1)
        for j in range(i, k + 1):
            t[j] = t[i] + width * (j - i)
        i = k + 1
    return t, t[1:] + [last]
