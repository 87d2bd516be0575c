"""Kill the engine with SIGKILL again and again, resume after each kill, check the workspace.

    python bench/kill_bench.py [--kills 50] [--seed N] [--max-delay 6] [--keep-timeout 60]
                               [--user-edit]

Runs a real short session (budget 1 s, a bigram trainer, the offline agent, a keep rule that
keeps any gain) in a throwaway workspace with `ratchet run`, and kills its engine at random
moments (seeded; the seed is printed) and at keeps: right after an exp_end with decision keep
or pending_confirm is written, right after the branch moves, or as an evaluation begins. Each
kill is followed by `ratchet run --resume`, which recovers and is then told to stop; then the
checks of tests/fault_checks.py (test_loop's and test_integrity's invariants among them) run:
commits exist, keeps are ancestors of HEAD and discards are not, HEAD is the last keep, the
tree is clean, the log and results.tsv agree, experiment numbers are contiguous and unique, no
process of the workspace is left (psutil) and no private folder (the workspace's runs, and the
engine's temp folder). With `--user-edit` the person edits program.md (uncommitted) once the
session runs: the edit must survive every kill and resume, as the only change in the tree.
Prints each kill and the counts: kills, resumes, inconsistencies by kind.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_checks import KILLS, KillRun, keeping_workspace  # noqa: E402

from ratchet.engine.workspace import layout  # noqa: E402

WEIGHTS = {"random": 0.6, "keep": 0.15, "branch": 0.15, "evaluating": 0.1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--max-delay", type=float, default=6.0,
                        help="a random kill comes 0 to this many seconds after the resume")
    parser.add_argument("--keep-timeout", type=float, default=60.0,
                        help="seconds to wait for a keep before killing anyway")
    parser.add_argument("--user-edit", action="store_true",
                        help="edit program.md mid-run, uncommitted, and check it survives")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="ratchet-killbench-"))
    temp = tmp / "tmp"  # the engine's temp folder (TMPDIR): what is left there is its own
    temp.mkdir()
    os.environ["TMPDIR"] = str(temp)
    os.environ.pop("ANTHROPIC_API_KEY", None)
    asked, hit, bad, first = Counter(), Counter(), Counter(), {}
    started = time.monotonic()
    run = None
    try:
        template = tmp / "template"
        layout.init(template, device="cpu", echo=lambda *_: None)
        run = KillRun(keeping_workspace(tmp / "ws", template), user_edit=args.user_edit)
        run.start()
        for k in range(1, args.kills + 1):
            how = rng.choices(KILLS, [WEIGHTS[name] for name in KILLS])[0]
            landed = run.kill(how, delay=rng.uniform(0.0, args.max_delay),
                              timeout=args.keep_timeout)
            asked[how] += 1
            hit[landed] += 1
            found = run.verify()
            left = sorted(p.name for p in temp.iterdir())
            if left:
                found["temp folders (system)"] = ", ".join(left[:3])
                for name in left:
                    shutil.rmtree(temp / name, ignore_errors=True)
            for kind, detail in found.items():
                bad[kind] += 1
                first.setdefault(kind, f"kill {k}: {detail}")
            print(f"kill {k:3}: {how:<10} hit {landed:<10} "
                  f"{'consistent' if not found else sorted(found)}", flush=True)
    finally:
        if run is not None:
            run.close()
        shutil.rmtree(tmp, ignore_errors=True)
    kills = sum(asked.values())
    print(f"\nseed {seed}: {kills} kills in {time.monotonic() - started:.0f} s "
          f"(asked: {dict(asked)}; landed: {dict(hit)}), {run.resumes if run else 0} resumes")
    print(f"inconsistencies: {sum(bad.values())}" + "".join(
        f"\n  {kind}: {n} (first: {first[kind][:200]})" for kind, n in bad.most_common()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
