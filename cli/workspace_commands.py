"""Commands on a workspace: init, prepare, experiment, import."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ratchet.cli.arguments import UserError, data_source
from ratchet.engine.protocol import schema
from ratchet.engine.runner import devices, experiment, sandbox, workspace_probes
from ratchet.engine.workspace import catalog, importer, layout


def cmd_init(args) -> int:
    source, paths = data_source(args)
    ws = layout.init(Path(args.dir), device=devices.resolve(args.device), budget=args.budget,
                     source=source or "stdlib", paths=paths, column=args.column or "text",
                     dataset=args.dataset, shards=args.shards,
                     tokenizer_kind=args.tokenizer or "bytes", vocab_size=args.vocab_size)
    warn_if_unsandboxed()
    workspace_probes.probe_validation(ws)
    workspace_probes.probe_privileges(ws)
    return 0


def cmd_prepare(args) -> int:
    ws = layout.find(args.workspace)
    source, paths = data_source(args)
    if args.stdlib:
        source, paths = "stdlib", []
    if args.stdlib and args.dataset:
        raise UserError("--stdlib and --dataset name two different corpora; choose one")
    built = layout.prepare_data(ws, source, paths, column=args.column,
                                val_percent=args.val_percent, dataset=args.dataset,
                                shards=args.shards, tokenizer_kind=args.tokenizer,
                                vocab_size=args.vocab_size)
    workspace_probes.probe_validation(ws, built, again=True)  # an explicit data step checks again
    workspace_probes.probe_privileges(ws, built)
    return 0


def cmd_experiment(args) -> int:
    ws = layout.find(args.workspace)
    config = ws.config()
    warn_if_unsandboxed()
    budget = args.budget or config.experiment.budget_seconds
    out = ws.runs_dir() / "experiments" / time.strftime("%Y%m%d-%H%M%S")
    print(f"experiment: training {budget:g} s on {config.experiment.device} "
          f"(output in {out.relative_to(ws.root)})", flush=True)

    def show(record: dict) -> None:
        if not args.quiet:
            print(f"  step {record.get('step', 0):>6}  loss {record.get('loss', float('nan')):.4f}"
                  f"  {record.get('tok_s', 0):>9.0f} tok/s  {record.get('elapsed', 0):6.1f} s",
                  flush=True)

    result = experiment.run(ws, config, out, seed=args.seed, budget=budget, on_log=show)
    if result.status != schema.OK and result.tail:
        print("--- output tail ---\n" + "\n".join(result.tail.splitlines()[-20:]))
    print(experiment.summary_text(result))
    return 0 if result.status == schema.OK else 1


def cmd_import(args) -> int:
    try:
        runs = importer.destination(args.path, args.workspace)
        folder, count = importer.import_run(args.path, runs, force=args.force,
                                            on_warning=catalog.warn_stderr)
    except importer.ImportFailed as exc:
        raise UserError(str(exc)) from None
    print(f"imported {count} experiments as session {folder.name} (in {runs})")
    return 0


_warned = False


def warn_if_unsandboxed() -> None:
    global _warned
    if not _warned and sandbox.bwrap_path() is None:
        print(f"ratchet: warning: training runs without a sandbox ({sandbox.unavailable_reason()})"
              "; train.py could read validation files", file=sys.stderr)
        _warned = True
