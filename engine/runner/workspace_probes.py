"""The probes `ratchet init` and `ratchet prepare` run on a workspace, each in the sandbox a
trainer gets (`sandbox_probe`), with their verdicts recorded in the corpus's meta.json: whether
train.py can read any piece of the validation split, and what a trainer started by root holds.
"""

from __future__ import annotations

import os

from ratchet.engine.data import corpus
from ratchet.engine.runner import sandbox, sandbox_probe
from ratchet.engine.workspace.layout import Workspace

PROBE_SAMPLES = 64  # pieces of validation text the probe looks for, 64 bytes each
PROBE_SECONDS = 120.0  # default time bound of the probe; RATCHET_PROBE_SECONDS overrides, 0 skips


def probe_validation(ws: Workspace, built: corpus.Corpus | None = None, *, again: bool = False,
                     seconds: float | None = None, echo=print) -> bool | None:
    """Search every file train.py can read, in its own sandbox, for pieces of the validation
    split; print one line and record the verdict in the corpus's meta.json (`val_hidden`:
    true, false, or null when the search did not finish). Done once per corpus (and sandbox
    availability) unless `again`.
    """
    built = built or ws.corpus()
    earlier = built.meta.get("probe")
    if earlier and not again and earlier.get("sandboxed") == (sandbox.bwrap_path() is not None):
        echo(f"validation probe (earlier): {earlier.get('line', '?')}")
        return built.meta.get("val_hidden")
    if seconds is None:
        try:
            seconds = float(os.environ.get("RATCHET_PROBE_SECONDS") or PROBE_SECONDS)
        except ValueError:
            seconds = PROBE_SECONDS
    if seconds <= 0:
        echo("validation probe: skipped (RATCHET_PROBE_SECONDS=0)")
        return None
    samples = built.samples(PROBE_SAMPLES)
    if not samples:
        echo("validation probe: skipped (no line of 64 bytes or more in the validation split)")
        return None
    cache = built.root.parent.parent / "compile-cache"  # what the trainer may write
    found = sandbox_probe.probe(samples, cwd=ws.root, readable=[ws.root, built.train_path.parent],
                          writable=[cache] if cache.is_dir() else [],
                          hidden=[built.root.parent], held_out=sandbox.HELD_OUT, seconds=seconds)
    hidden, line = _verdict(found, len(samples), seconds)
    echo(line)
    built.record(val_hidden=hidden, probe={
        "line": line, "samples": len(samples), **{k: v for k, v in found.items() if k != "leaks"},
        "leaks": sorted(found.get("leaks", {}))[:50]})
    return hidden


def probe_privileges(ws: Workspace, built: corpus.Corpus | None = None, *,
                     echo=print) -> bool | None:
    """Check what a trainer started by root holds in its sandbox (capabilities, mounts, file
    handles, /proc/sys, seccomp; a second); print one line and record the verdict in the
    corpus's meta.json (`sandbox_holds`, `sandbox_line`)."""
    built = built or ws.corpus()
    holds, line = sandbox_probe.privileges_verdict(sandbox_probe.privileges(ws.root))
    echo(line)
    built.record(sandbox_holds=holds, sandbox_line=line)
    return holds


def _verdict(found: dict, count: int, seconds: float) -> tuple[bool | None, str]:
    if not found["sandboxed"]:
        return False, (f"validation READABLE by train.py: no sandbox here "
                       f"({sandbox.unavailable_reason()}), so train.py runs as a plain process "
                       f"that can read every file, the validation split included")
    if "error" in found:
        return None, f"validation probe failed: {found['error']}"
    leaks = found["leaks"]
    hits = {i for indexes in leaks.values() for i in indexes}
    if leaks:
        shown = ", ".join(sorted(leaks)[:3]) + (", ..." if len(leaks) > 3 else "")
        return False, (f"validation READABLE by train.py: {len(hits)} of {count} samples found "
                       f"in {len(leaks)} readable files: {shown}")
    if not found["complete"]:
        return None, (f"validation probably hidden from train.py: 0 of {count} samples found in "
                      f"{found['searched']:,} of {found['files']:,} readable files (stopped after "
                      f"{seconds:g} s; the largest files were not searched)")
    return True, (f"validation hidden from train.py: 0 of {count} samples found in "
                  f"{found['files']:,} readable files ({found['seconds']:.0f} s)")
