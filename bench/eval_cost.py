"""Time of the frozen evaluation of the default model, for this harness and another one.

    python bench/eval_cost.py [--against OTHER_PREPARE.py] [--repeat N]

Builds a CPU workspace with the default profile, trains its train.py for a few seconds, then
times `evaluate_bpb` on the exported model N times with Ratchet's harness (and with
OTHER_PREPARE.py, e.g. `git show REV:model/prepare.py > old.py`), printing the median seconds
and the val_bpb of each: the cost of the harness's checks, measured on the same model.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

from ratchet.engine.runner import experiment
from ratchet.engine.workspace import layout


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another prepare.py to time beside ours")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        ws = layout.init(Path(tmp) / "ws", device="cpu", budget=args.budget,
                         echo=lambda *_: None)
        config = ws.config()
        out = Path(tmp) / "exp"
        result = experiment.run(ws, config, out)
        model, val = out / "model" / "model.pt2", ws.corpus(config).val_path
        assert result.status == "ok" and model.is_file(), result.error
        data = config.data
        harnesses = {"ours": ws.root / "prepare.py"}
        if args.against:
            harnesses["other"] = args.against
        loaded = {label: _load(path, f"prepare_{label}") for label, path in harnesses.items()}
        times: dict[str, list[float]] = {label: [] for label in loaded}
        bpb: dict[str, float] = {}
        for _ in range(args.repeat):  # alternated, so both see the same machine load
            for label, harness in loaded.items():
                t0 = time.perf_counter()
                bpb[label] = harness.evaluate_bpb(str(model), str(val), data.eval_tokens, "cpu",
                                                  (data.eval_batch, data.eval_seq))["val_bpb"]
                times[label].append(time.perf_counter() - t0)
        for label, path in harnesses.items():
            print(f"{label:6s} {path}: median {statistics.median(times[label]):.3f} s "
                  f"(min {min(times[label]):.3f}) over {args.repeat}, val_bpb {bpb[label]:.6f}")


if __name__ == "__main__":
    main()
