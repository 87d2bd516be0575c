"""How compat judges a checkout's runs: a train.py that fixes its own seed (autoresearch's) runs
each candidate once and keeps gains above min_improvement, and nothing shows a noise figure the
session never measured; one that reads RATCHET_SEED gets the native paired rule."""

from __future__ import annotations

from pathlib import Path

import autoresearch_checkout as ar
from paced_agent import PacedAgent

from ratchet.cli import headless, report
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.runner import compat
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import results_tsv

# From the baseline's 1.060000: a gain of 0.04 (kept), one of 0.005 (under the minimum), none
PLAN = [("MATRIX_LR", 0.04), ("DEPTH", 4.5), ("WARMUP_RATIO", 0.1)]


def run_session(root: Path, said: list[str], name: str, plan, experiments: int) -> list[dict]:
    ws = compat.prepare_checkout(root, echo=said.append)
    options = RunOptions(session=name, tag=name, max_experiments=experiments)
    Session(ws, ws.config(), options, PacedAgent(0.0, list(plan))).run()
    return list(events.iter_events(ws.runs_dir() / name / "events.jsonl"))


def test_a_seedless_train_py_runs_each_candidate_once(tmp_path):
    root = ar.make(tmp_path / "autoresearch", train=ar.REAL)
    said: list[str] = []
    log = run_session(root, said, "seedless", PLAN, 3)
    # what the start line promises ...
    (line,) = [s for s in said if "takes no seed" in s]
    assert "once" in line and "min_improvement = 0.01" in line, line
    ends = [e for e in log if e["type"] == "exp_end"]
    why = "\n".join(f"{e['kind']} {e['decision']} {e.get('val_bpb')} {e.get('paired')}"
                    for e in ends)
    # ... is what happens: one run per candidate, the clear gain kept, the small one not
    assert [e["kind"] for e in ends] == ["baseline", "candidate", "candidate", "candidate"], why
    assert [e["decision"] for e in ends] == ["baseline", "keep", "near_miss", "discard"], why
    assert ends[0]["val_bpb"] == ar.expected_bpb(ar.REAL) == 1.06
    # no reading of a noise it never measured (`± 0.0000 (z -inf)`)
    assert not any("paired" in e for e in ends), why
    # one results.tsv row per experiment, the kept commit once
    rows = results_tsv.read(root / "results.tsv")
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "discard"]
    assert len({r["commit"] for r in rows}) == 4
    # status and report say the noise was not measured, and what a change must gain instead
    folder = root / "runs" / "seedless"
    status = headless.status_text(folder)
    (noise_line,) = [s for s in status.splitlines() if s.startswith("noise")]
    assert "±" not in noise_line and "not measured" in noise_line, noise_line
    assert "0.0100" in noise_line and "yet" not in noise_line, noise_line
    assert "kept 1" in status
    fig = report.figures(list(events.iter_events(folder / "events.jsonl")))
    assert "±" not in fig.noise and "not measured" in fig.noise


def test_a_train_py_that_reads_the_seed_gets_the_paired_rule(tmp_path):
    seeded = ar.REAL.replace("SEED = 42", "SEED = int(os.environ.get('RATCHET_SEED', 42))")
    root = ar.make(tmp_path / "autoresearch", train=seeded)
    said: list[str] = []
    ws = compat.prepare_checkout(root, echo=said.append)
    config, native = ws.config(), configmod.Config()
    assert config.loop.rule == native.loop.rule == "paired"
    assert config.loop.baseline_seeds == native.loop.baseline_seeds
    (line,) = [s for s in said if "RATCHET_SEED" in s]
    assert "paired" in line and "takes no seed" not in line, line
    # the metric does not depend on the seed here: a gain is measured on the best's every seed
    config.loop.baseline_seeds = 2
    configmod.save(root, config)
    log = run_session(root, said, "seeded", PLAN[:1], 1)
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [(e["kind"], e["decision"]) for e in ends] == [
        ("baseline", "baseline"), ("baseline", "baseline"), ("candidate", "pending_confirm"),
        ("confirm", "keep")]
    assert ends[-1]["paired"]["runs"] == 2


def test_a_seedless_checkout_whose_settings_ask_for_the_paired_rule_is_told(tmp_path):
    """A ratchet.toml written by an earlier release (or by hand) keeps its rule; the start line
    says what the paired rule will do with a train.py that ignores its seed."""
    root = ar.make(tmp_path / "autoresearch", train=ar.REAL)
    config = compat.checkout_config(root)
    config.loop.rule = "paired"
    configmod.save(root, config)
    said: list[str] = []
    compat.prepare_checkout(root, echo=said.append)
    (line,) = [s for s in said if "takes no seed" in s]
    assert 'rule = "paired"' in line and 'rule = "margin"' in line, line
