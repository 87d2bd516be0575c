"""What a greedy train.py gets out of the allowance against the honest template.

    python bench/allowance.py [--runs 3] [--budget 20] [--workspace DIR]

Runs, alternately, on a throwaway copy of the default CPU workspace (the real train.py, through
`experiment.run` as the loop does):

- `honest`: the template, which plans its training to the deadline `prepare.time_left()` gives,
  less HANDOFF_RESERVE_S for its export;
- `greedy`: the same file, planning its training to the deadline less only what its export
  needs (0.35 s of the run's clock instead of HANDOFF_RESERVE_S);
- `ignores-clock`: trains for twice its budget, whatever the clock says.

Prints each run's status, optimizer steps and the allowance the engine measured it to use, then
the greedy runs' steps over the honest runs' (the allowance has no spare second when that is
close to 1) and the statuses of the clock-ignoring runs (all `over_budget`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from ratchet.engine.runner import cpu_clock, experiment
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

PLAN = "planned = max(1e-3, prepare.time_left() - HANDOFF_RESERVE_S)"


def variants(template: str) -> dict[str, str]:
    assert PLAN in template, "train.py does not plan its training as the template does"
    greedy = template.replace(PLAN, "planned = max(1e-3, prepare.time_left() - 0.35)")
    ignores = template.replace(PLAN, "planned = 2 * prepare.budget_seconds()")
    return {"honest": template, "greedy": greedy, "ignores-clock": ignores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--workspace", help="an initialised CPU workspace to copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-allowance-") as tmp:
        root = Path(tmp) / "ws"
        if args.workspace:
            shutil.copytree(args.workspace, root, symlinks=True,
                            ignore=shutil.ignore_patterns("runs"))
            ws = layout.Workspace(root)
            ws.restore_harness()  # this release's frozen harness
        else:
            ws = layout.init(root, device="cpu", echo=lambda *_: None)
        config = ws.config()
        config.experiment.budget_seconds = args.budget
        configmod.save(root, config)
        sources = variants((root / "train.py").read_text())
        found: dict[str, list] = {name: [] for name in sources}
        for i in range(args.runs):
            for name, source in sources.items():
                (root / "train.py").write_text(source)
                result = experiment.run(ws, ws.config(), root / "runs" / f"{name}-{i}")
                used = (result.trainer_cpu_seconds or 0.0) / cpu_clock.cores() \
                    if result.clock == cpu_clock.CPU else (result.trainer_seconds or 0.0)
                found[name].append(result)
                print(f"{name:14} run {i}: {result.status:12} steps {result.steps:5}  "
                      f"used {used:6.2f} of {args.budget:g} s  "
                      f"val_bpb {result.val_bpb if result.val_bpb is not None else '-'}",
                      flush=True)
    honest = [r.steps for r in found["honest"] if r.status == "ok"]
    greedy = [r.steps for r in found["greedy"] if r.status == "ok"]
    if honest and greedy:
        ratio = statistics.mean(greedy) / statistics.mean(honest)
        print(f"greedy / honest optimizer steps: {ratio:.3f} "
              f"({statistics.mean(greedy):.0f} / {statistics.mean(honest):.0f}; "
              f"{len(greedy)} and {len(honest)} ok runs)")
    statuses = [r.status for r in found["ignores-clock"]]
    print(f"ignores the clock: {', '.join(statuses)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
