"""Memory across sessions: every earlier session of a workspace reaches the agents.

A real first session (the offline agent on a trainer whose constants change nothing, so every
candidate is discarded), then a second one in the same workspace: the offline agent proposes
none of the first session's discarded changes, and the Claude agent's first request holds the
first session's outcomes. Then the index itself, on corrupt logs and an imported autoresearch
session, without training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from fake_messages_api import FakeMessagesAPI, stream

from ratchet.cli import main
from ratchet.engine.agents import archive, diagnostics, earlier
from ratchet.engine.agents.base import Context, HistoryEntry, JournalNote, Proposal
from ratchet.engine.agents.claude import prompt, research
from ratchet.engine.agents.claude.agent import ClaudeAgent
from ratchet.engine.agents.claude_code.scratch import Scratch
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.protocol.events import EventLog
from ratchet.engine.protocol.history import StudyNote
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import earlier as index
from ratchet.engine.workspace import layout

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

FAKE_KEY = "sk-ant-fake-memory"

# A bigram whose result depends only on the seed: every change to its constants is pure noise,
# so the first session keeps nothing and the second starts from the same code. The constants'
# ranges are small (whole numbers around 6, 4 and 3: 20 other values in all), so an agent that
# forgets repeats a discarded change within ten proposals.
TRAINER = '''
import numpy as np
import torch

import prepare

UNUSED_A = 6  # changes nothing
UNUSED_B = 4  # changes nothing
UNUSED_C = 3  # changes nothing

start = (prepare.seed() % 7) * 150_000
data = np.asarray(prepare.load_train_data()[start:start + 150_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log(counts.reshape(256, 256) + 1.0), dtype=torch.float32)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.log_step(step=1, loss=1.0, lr=0.0, tok_s=1.0, elapsed=0.1)
prepare.save_model(model, {"steps": 1, "tokens": len(data), "params": 65536})
'''
FIRST = "s-first"


def run_session(ws: layout.Workspace, session: str, max_experiments: int, agent=None
                ) -> list[dict]:
    config = ws.config()
    options = RunOptions(session=session, tag=session, max_experiments=max_experiments)
    Session(ws, config, options, agent or OfflineAgent.from_config(config)).run()
    return log_of(ws, session)


def log_of(ws: layout.Workspace, session: str) -> list[dict]:
    return list(events.iter_events(ws.runs_dir() / session / "events.jsonl"))


@pytest.fixture(scope="module")
def first_session(template_workspace, tmp_path_factory) -> Path:
    """A workspace after one real session of the offline agent: a baseline run and four
    discarded candidates."""
    root = tmp_path_factory.mktemp("memory") / "ws"
    shutil.copytree(template_workspace, root, symlinks=True)
    ws = layout.Workspace(root)
    config = ws.config()
    config.experiment.budget_seconds, config.data.eval_tokens = 11.0, 65536
    config.loop.baseline_seeds, config.loop.confirm, config.loop.rule = 1, False, "margin"
    configmod.save(root, config)
    (root / "train.py").write_text(TRAINER)
    repo = git.Repo(root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("a trainer whose constants change nothing")
    run_session(ws, FIRST, max_experiments=4)
    return root


@pytest.fixture
def workspace(first_session, tmp_path) -> layout.Workspace:
    """A copy of the workspace after its first session, for a second session of its own."""
    root = tmp_path / "ws"
    shutil.copytree(first_session, root, symlinks=True)
    return layout.Workspace(root)


def candidate_ends(log: list[dict]) -> list[dict]:
    return [e for e in log if e["type"] == "exp_end" and e["kind"] == "candidate"]


def replay_without_memory(config: configmod.Config, session: str, proposals: int
                          ) -> list[dict]:
    """The changes the offline agent of `session` proposes when it knows nothing of earlier
    sessions, each reported back as a discard (as this trainer's are)."""
    agent = OfflineAgent.from_config(config)
    agent.start_session(session)
    agent.observe(Proposal("baseline", {}), HistoryEntry(0, "baseline", "ok", "baseline", 3.0,
                                                         None))
    history: list[HistoryEntry] = []
    for n in range(1, proposals + 1):
        context = Context(files={"train.py": TRAINER}, program="", history=list(history),
                          best_bpb=3.0, margin=0.0)
        proposal = agent.propose(context, lambda _text: None)
        entry = HistoryEntry(n, proposal.description, "ok", "discard", 3.0, 0.0,
                             proposal.changes)
        agent.observe(proposal, entry)
        history.append(entry)
    return [dict(e.changes) for e in history]


# --- the offline agent: a second session remembers the first ------------------------------


def test_a_second_session_proposes_none_of_the_first_sessions_discarded_changes(workspace):
    first = log_of(workspace, FIRST)
    ends = candidate_ends(first)
    discarded = [e["changes"] for e in ends if e["decision"] != "keep"]
    assert len(discarded) == 4 and len(ends) == 4  # nothing kept: the same code follows
    assert all(len(c) == 1 for c in discarded)

    # without memory, the second session's agent (same seed, same session id) repeats some
    forgetful = replay_without_memory(workspace.config(), "s-second", 10)
    assert [c for c in forgetful if c in discarded], (forgetful, discarded)

    second = run_session(workspace, "s-second", max_experiments=10)
    proposed = [e["changes"] for e in second if e["type"] == "proposal"]
    assert len(proposed) == 10
    assert not [c for c in proposed[:10] if c in discarded], (proposed, discarded)
    streamed = "".join(e["text"] for e in second if e["type"] == "agent_delta")
    assert "Earlier sessions: 4 runs in 1 session; learned from 4;" in streamed
    # the first session's folder holds the index's cache of its log, nothing else new
    assert (workspace.runs_dir() / FIRST / index.CACHE).is_file()


# --- the Claude agent: its first request holds the first session's outcomes ----------------


def write_ablation(runs: Path, of: str, changes: list[tuple[int, str, str, float]]) -> str:
    """An ablate study of session `of` as the engine logs one: (exp, description, flag,
    contribution) per kept change."""
    study = "20991231-000000-ablate-x-0001"
    log = events.EventLog(runs / study / "events.jsonl")
    log.record({"t": 1.0, "type": "session_start", "session": study, "tag": "x",
                "study": "ablate", "of": of, "best_commit": "", "seeds": [1, 2],
                "changes": [{"exp": n, "description": d} for n, d, _, _ in changes],
                "prune": False})
    for n, description, flag, effect in changes:
        log.record({"t": 2.0, "type": "study_result", "study": "ablate", "change": n,
                    "description": description, "effect": effect, "se": 0.002, "runs": 2,
                    "diffs": [effect, effect], "flag": flag})
    log.record({"t": 3.0, "type": "session_end", "reason": "complete"})
    log.close()
    return study


def test_the_claude_agents_first_request_holds_the_first_sessions_outcomes(workspace):
    ends = candidate_ends(log_of(workspace, FIRST))
    looked_at = ends[1]
    write_ablation(workspace.runs_dir(), FIRST, [(2, "UNUSED_B -> 5", "helps", -0.0123),
                                                 (3, "UNUSED_C -> 1", "harmful", 0.0081)])
    config = workspace.config()
    config.agent.claude.thinking_budget, config.agent.claude.max_tokens = 1024, 4096
    config.agent.claude.max_retries, config.agent.claude.retry_base_seconds = 1, 0.01
    with FakeMessagesAPI() as api:
        api.add(stream(("tool_use", "view_experiment", {"exp": looked_at["exp"],
                                                        "session": FIRST})),
                stream(("tool_use", "search_experiments", {"query": "UNUSED_B UNUSED_C"})),
                stream(("tool_use", "str_replace", {"path": "train.py",
                                                    "old_str": "UNUSED_C = 3",
                                                    "new_str": "UNUSED_C = 9"})),
                stream(("tool_use", "finish", {"description": "raise UNUSED_C to 9"})))
        agent = ClaudeAgent(config, api_key=FAKE_KEY, base_url=api.url)
        second = run_session(workspace, "s-claude", max_experiments=1, agent=agent)
        requests = [r["body"] for r in api.requests]

    assert any(e["type"] == "proposal" and e["description"] == "raise UNUSED_C to 9"
               for e in second)
    text = requests[0]["messages"][0]["content"][0]["text"]
    assert "## Earlier sessions of this workspace" in text
    assert f"### session {FIRST}: 4 experiments, 0 kept" in text
    for end in ends:  # each outcome, under its session:number
        assert f"{FIRST}:{end['exp']} | {end['decision']} | {end['val_bpb']:.4f} | " \
               f"{end['delta']:+.4f}" in text
        assert end["description"] in text
    # the earlier section comes before the session's own (empty) table
    assert text.index("## Earlier sessions") < text.index("## Results so far")
    # and it says what a study of the first session concluded
    assert "What studies of earlier sessions concluded" in text
    assert f"- ablate of the best of session {FIRST}, each kept change undone: 'UNUSED_B -> 5'" \
           " helps (-0.0123 +- 0.0020); 'UNUSED_C -> 1' harmful (+0.0081 +- 0.0020)" in text

    viewed = tool_text(requests[1])
    assert viewed.startswith(f"Experiment {FIRST}:{looked_at['exp']}: "
                             f"{looked_at['description']} (earlier session {FIRST})")
    name = next(iter(looked_at["changes"]))
    assert f"+{name} = {looked_at['changes'][name]}" in viewed  # its diff
    found = tool_text(requests[2])
    assert "no experiment of this session matches" in found
    assert "Earlier sessions' experiments" in found
    for end in ends:
        if set(end["changes"]) & {"UNUSED_B", "UNUSED_C"}:
            assert f"{FIRST}:{end['exp']} | " in found


def tool_text(body: dict) -> str:
    (block,) = [b for b in body["messages"][-1]["content"] if b["type"] == "tool_result"]
    content = block["content"]
    return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)


# --- the index on corrupt, partial and odd logs --------------------------------------------


def write_session(runs: Path, session: str, candidates: int = 2, note: str = "") -> Path:
    """A small real-looking log: a baseline, candidates (the last kept), streams between."""
    path = runs / session / "events.jsonl"
    with EventLog(path) as log:
        log.append("session_start", session=session, tag=session, branch="b",
                   base_commit="c0", config={}, hardware={}, agent="offline", resumed=False,
                   pid=1)
        log.append("exp_end", exp=1, kind="baseline", status="ok", decision="baseline",
                   val_bpb=3.0, commit="c0", description="baseline", changes={}, result={})
        for n in range(2, candidates + 2):
            kept = n == candidates + 1
            log.append("proposal", exp=n, description=f"LR 0.01 -> 0.0{n}", rationale="",
                       diff=f"-LR = 0.01\n+LR = 0.0{n}", files=["train.py"], based_on="c0",
                       changes={"LR": n / 100}, steer=[], commit=f"c{n}")
            log.append("train_log", exp=n, step=1, loss=2.0, worker="0")
            log.append("agent_delta", exp=n, text="thinking " * 20)
            log.append("resources", cpu_percent=50.0, memory_percent=10.0)
            log.append("exp_end", exp=n, kind="candidate", status="ok",
                       decision="keep" if kept else "discard", val_bpb=3.0 - n / 100,
                       delta=-n / 100 if kept else n / 100, margin=0.001, commit=f"c{n}",
                       description=f"LR 0.01 -> 0.0{n}", changes={"LR": n / 100},
                       result={"steps": 10, "tail": "x" * 5000, "budget_seconds": 11.0})
        if note:
            log.append("journal", exp=2, text=note)
    return path


def test_the_index_reads_every_other_session_past_bad_lines_and_a_torn_end(tmp_path):
    runs = tmp_path / "runs"
    good = write_session(runs, "a-good", note="LR above 0.02 hurts")
    with open(good, "ab") as f:  # damage of every kind, between and after the valid lines
        f.write(b"not json at all\n\x00\xff\xfe binary\n[1, 2]\n"
                b'{"t": 5, "type": "exp_end", "exp": "three"}\n'
                b'{"t":5,"type":"train_log","exp":2,"step":' + b"9" * 50 + b"\n"
                # a loop event in another layout (spaces, key order) still counts
                + json.dumps({"type": "journal", "exp": 3, "t": 6.0,
                              "text": "written by hand"}).encode() + b"\n"
                # valid JSON with fields of odd types: read with those fields emptied
                b'{"t":8,"type":"exp_end","exp":5,"kind":"candidate","status":"ok",'
                b'"decision":"discard","val_bpb":3.5,"description":7,"changes":[1],'
                b'"diff":{},"result":"odd"}\n'
                b'{"t":7,"type":"exp_end","exp":9,"kind":"candidate","status":"ok","val_b')
    write_session(runs, "now")  # the current session: left out
    (runs / "b-empty").mkdir()
    (runs / "b-empty" / "events.jsonl").write_bytes(b"")
    (runs / "c-garbage").mkdir()
    (runs / "c-garbage" / "events.jsonl").write_bytes(b"\x00" * 100 + b"\n{{{{\n")
    (runs / "d-no-log").mkdir()
    warnings: list[str] = []

    found = index.read(runs, exclude="now", on_warning=warnings.append)
    assert found.sessions == ["a-good"]
    assert [(e.label, e.decision, e.commit) for e in found.entries] == [
        ("a-good:2", "discard", "c2"), ("a-good:3", "keep", "c3"), ("a-good:5", "discard", "")]
    odd = found.entries[-1]
    assert (odd.description, odd.changes, odd.diff, odd.result) == ("", {}, "", {})
    assert found.entries[0].diff == "-LR = 0.01\n+LR = 0.02"
    assert found.entries[0].changes == {"LR": 0.02}
    assert "tail" not in found.entries[0].result  # an ok run's output is its own session's
    assert [(n.session, n.exp, n.text) for n in found.journal] == [
        ("a-good", 2, "LR above 0.02 hurts"), ("a-good", 3, "written by hand")]
    assert len(warnings) == 2 and "a-good" in warnings[0] and "skipped 4 lines" in warnings[0]
    assert "c-garbage" in warnings[1]

    # read again: from the cache beside each log, the same, with no warning
    assert (runs / "a-good" / index.CACHE).is_file()
    again = index.read(runs, exclude="now", on_warning=warnings.append)
    assert again.entries == found.entries and again.journal == found.journal
    assert len(warnings) == 2
    # the log grew (a resumed session): the cache is stale and the log is read again
    with EventLog(good) as log:
        log.append("exp_end", exp=4, kind="candidate", status="crash", decision="crash",
                   val_bpb=None, commit="c4", description="LR 0.01 -> 0.5", changes={"LR": 0.5},
                   result={"error": "loss is nan", "tail": "y" * 4000 + "nan!"})
    grown = index.read(runs, exclude="now")
    assert [e.label for e in grown.entries] == ["a-good:2", "a-good:3", "a-good:5", "a-good:4"]
    crashed = grown.entries[-1]
    assert crashed.result["tail"].endswith("nan!")  # a failed run keeps the end of its output
    assert len(crashed.result["tail"]) == index.FAILED_TAIL_CHARS
    # a damaged cache is ignored (and replaced)
    (runs / "a-good" / index.CACHE).write_text('{"version": 1, "size": ')
    assert index.read(runs, exclude="now").entries == grown.entries
    assert index.read(runs, exclude="now", cache=False).entries == grown.entries
    assert index.read(tmp_path / "nowhere").entries == []


def test_a_log_the_index_cannot_fold_is_left_out_with_a_warning(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    write_session(runs, "a-odd")
    write_session(runs, "b-fine")
    fold = index.fold_log

    def failing(log: Path, session: str, on_warning=None):
        if session == "a-odd":
            raise RuntimeError("an event the fold cannot take")
        return fold(log, session, on_warning)

    monkeypatch.setattr(index, "fold_log", failing)
    warnings: list[str] = []
    found = index.read(runs, on_warning=warnings.append)
    assert found.sessions == ["b-fine"]
    assert len(warnings) == 1 and "a-odd" in warnings[0] and "cannot take" in warnings[0]


def test_an_imported_autoresearch_session_is_an_earlier_session(tmp_path, monkeypatch):
    checkout = autoresearch_checkout(tmp_path / "autoresearch")
    monkeypatch.chdir(tmp_path)
    assert main.main(["import", str(checkout)]) == 0
    found = index.read(checkout / "runs")
    (session,) = found.sessions
    assert [(e.description, e.decision) for e in found.entries] == [
        ("depth 6", "keep"), ("depth 12", "discard"), ("depth 12 again", "discard")]
    assert all(e.session == session and e.commit for e in found.entries)
    # what each ran, while git has it: the discarded commit is on no branch, and still there
    texts = found.files_at([e.commit for e in found.entries] + ["deadbee"], "train.py")
    assert [texts[e.commit].splitlines()[0] for e in found.entries] == [
        "DEPTH = 6", "DEPTH = 12", "DEPTH = 12"]
    assert "deadbee" not in texts

    # the offline agent, on the checkout's first train.py, never runs DEPTH 6 or 12 again
    agent = OfflineAgent(seed=3)
    agent.start_session("s-next")
    streamed: list[str] = []
    history: list[HistoryEntry] = []
    base = "DEPTH = 8\nprint('training')\n"
    for n in range(1, 9):
        context = Context(files={"train.py": base}, program="", history=list(history),
                          best_bpb=1.1, margin=0.0, earlier=found.entries,
                          earlier_files=found.files_at)
        proposal = agent.propose(context, streamed.append)
        history.append(HistoryEntry(n, proposal.description, "ok", "discard", 1.2, 0.1,
                                    proposal.changes))
        agent.observe(proposal, history[-1])
    depths = [e.changes["DEPTH"] for e in history]
    assert not {6, 12} & set(depths), depths
    assert "Earlier sessions: 3 runs in 1 session; learned from 3;" in "".join(streamed)


def autoresearch_checkout(root: Path) -> Path:
    """An autoresearch run: a baseline, a keep, a discard reset away, a discard kept on a
    branch; results.tsv names their commits."""
    root.mkdir(parents=True)
    repo = git.Repo.init(root, initial_branch="autoresearch/mar1")
    (root / "prepare.py").write_text("TIME_BUDGET = 300\n")
    repo.index.add(["prepare.py"])
    repo.index.commit("initial")

    def commit(depth: int, message: str) -> str:
        (root / "train.py").write_text(f"DEPTH = {depth}\nprint('training')\n")
        repo.index.add(["train.py"])
        return repo.index.commit(message).hexsha

    base = commit(8, "baseline")
    kept = commit(6, "depth 6")
    discarded = commit(12, "depth 12")
    repo.git.reset("--hard", kept)
    (root / "train.py").write_text("DEPTH = 12\nprint('training')\n")
    repo.index.add(["train.py"])
    again = repo.index.commit("depth 12 again").hexsha
    repo.git.reset("--hard", kept)
    rows = [("commit", "val_bpb", "memory_gb", "status", "description"),
            (base[:7], "1.100000", "44.0", "keep", "baseline"),
            (kept[:7], "1.050000", "40.0", "keep", "depth 6"),
            (discarded[:7], "1.070000", "48.0", "discard", "depth 12"),
            (again[:7], "1.080000", "48.0", "discard", "depth 12 again")]
    (root / "results.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    return root


def test_the_offline_agent_learns_only_runs_at_its_budget_and_marks_a_change_tried_before():
    """Earlier runs of the trainer: UNUSED_A 6 -> 8 from this very code (at this budget, and
    at another), and UNUSED_B 4 -> 5 from other constants (UNUSED_C 2)."""
    config = configmod.Config()
    config.experiment.budget_seconds = 11.0
    files = {"same": TRAINER.replace("UNUSED_A = 6", "UNUSED_A = 8"),
             "longer": TRAINER.replace("UNUSED_A = 6", "UNUSED_A = 9"),
             "other": TRAINER.replace("UNUSED_B = 4", "UNUSED_B = 5").replace(
                 "UNUSED_C = 3", "UNUSED_C = 2")}
    runs = [HistoryEntry(1, "UNUSED_A 6 -> 8", "ok", "discard", 3.1, 0.1, {"UNUSED_A": 8},
                         result={"budget_seconds": 11.0}, commit="same", session="s1"),
            HistoryEntry(2, "UNUSED_A 6 -> 9", "ok", "discard", 3.1, 0.1, {"UNUSED_A": 9},
                         result={"budget_seconds": 60.0}, commit="longer", session="s1"),
            HistoryEntry(3, "UNUSED_B 4 -> 5", "ok", "discard", 3.1, 0.1, {"UNUSED_B": 5},
                         result={"budget_seconds": 11.0}, commit="other", session="s2"),
            HistoryEntry(4, "UNUSED_C 3 -> 4", "ok", "discard", 3.1, 0.1, {"UNUSED_C": 4},
                         result={"budget_seconds": 11.0}, commit="gone", session="s2")]
    agent = OfflineAgent.from_config(config)
    agent.start_session("s3")
    streamed: list[str] = []
    proposals = []
    for _ in range(12):
        context = Context(files={"train.py": TRAINER}, program="", history=[], best_bpb=3.0,
                          margin=0.0, earlier=runs,
                          earlier_files=lambda commits, _name: {c: files[c] for c in commits
                                                                if c in files})
        proposals.append(agent.propose(context, streamed.append))
    said = "".join(streamed)
    assert "Earlier sessions: 4 runs in 2 sessions; learned from 2 (left out: 1 whose " \
           "train.py git does not have, 1 run at another budget);" in said
    assert {"UNUSED_A": 8} not in [p.changes for p in proposals]  # that code ran already
    assert len(agent.study.trials) >= 2
    # the same change from other constants, at another budget, or of a file git lost: marked
    marked = {p.tried_before: p for p in proposals if p.tried_before}
    assert marked and set(marked) <= {"s2:3", "s1:2", "s2:4"}
    for label, p in marked.items():
        assert p.changes == next(r.changes for r in runs if r.label == label)
        assert f"an earlier session tried this change, not from this same code as far as git " \
               f"shows: {label} (discard, val_bpb 3.1000)" in p.rationale


# --- what the agents are shown --------------------------------------------------------------


def earlier_entries(sessions: int, each: int) -> list[HistoryEntry]:
    return [HistoryEntry(n, f"LEARNING_RATE 0.01 -> 0.0{n}", "ok",
                         "keep" if n % 10 == 0 else "discard", 3.0 + n / 100, 0.01,
                         {"LEARNING_RATE": n / 100}, 0.005,
                         diff=f"-LEARNING_RATE = 0.01\n+LEARNING_RATE = 0.0{n}",
                         result={"budget_seconds": 60.0, "curve": [[1.0, 1, 3.0]] * 24},
                         commit=f"c{s}-{n}", session=f"2026-night-{s:03d}")
            for s in range(sessions) for n in range(1, each + 1)]


def own_history(count: int) -> list[HistoryEntry]:
    return [HistoryEntry(n, f"change {n} " + "words " * 20, "ok", "discard", 3.0, 0.01, {},
                         0.005, diff="-A = 1\n+A = 2",
                         result={"budget_seconds": 60.0, "steps": 100,
                                 "curve": [[t, t, 3.0] for t in range(1, 25)]})
            for n in range(1, count + 1)]


def validated(session: str, of: str, readings: list[tuple[float, float, str]],
              complete: bool = True) -> StudyNote:
    """A validate study's note: (multiple, effect, verdict) per budget, a trend from 2 on."""
    rows = [{"study": "validate", "multiple": m, "budget": 20 * m, "effect": e, "se": 0.004,
             "runs": 4, "verdict": v,
             "trend": {"slope": 0.008, "se": 0.003, "budgets": i + 1} if i else None}
            for i, (m, e, v) in enumerate(readings)]
    return StudyNote(session, "validate", of, rows, complete)


def test_what_studies_concluded_leads_the_earlier_section_within_its_share():
    entries = [HistoryEntry(4, "LEARNING_RATE 0.01 -> 0.02", "ok", "keep", 2.9, -0.01,
                            session="night-1"),
               HistoryEntry(5, "WIDTH 64 -> 96", "ok", "discard", 3.1, 0.02, session="night-1")]
    studies = [validated("study-1", "night-1", [(1.0, -0.0312, "holds"), (2.0, -0.015,
                                                                         "shrinks")]),
               StudyNote("study-2", "ablate", "night-1", [], False),  # it read nothing yet
               validated("study-3", "night-1", [(1.0, -0.03, "holds")], complete=False)]
    section = earlier.render(entries, [], studies=studies)
    lines = section.splitlines()
    assert lines[0].startswith("What studies of earlier sessions concluded")
    # newest first; the one that read nothing is left out; an unfinished one says so
    assert lines[1] == ("- validate (unfinished): the best of session night-1 (its kept "
                        "changes: LEARNING_RATE 0.01 -> 0.02) against its base: 1x the budget: "
                        "-0.0300 +- 0.0040 holds")
    assert lines[2] == ("- validate: the best of session night-1 (its kept changes: "
                        "LEARNING_RATE 0.01 -> 0.02) against its base: 1x the budget: -0.0312 "
                        "+- 0.0040 holds; 2x the budget: -0.0150 +- 0.0040 shrinks; trend "
                        "+0.0080 per doubling")
    assert lines[3].startswith("1 earlier session of this workspace ran 2 experiments")
    # many studies: the newest fit in their share, and the section in its budget
    many = [validated(f"study-{n:03d}", "night-1", [(1.0, -0.03, "holds"), (2.0, -0.01,
                                                                           "shrinks")])
            for n in range(300)]
    section = earlier.render(entries, [], studies=many)
    assert len(section) <= earlier.EARLIER_CHARS
    concluded = earlier.render_studies(many, entries)
    assert len(concluded) <= earlier.EARLIER_CHARS // earlier.STUDIES_SHARE
    assert concluded in section and "older studies left out)" in concluded
    # a Context carries them into the Claude agents' message, even with no earlier experiment
    context = Context(files={"train.py": "A = 1\n"}, program="", history=[], best_bpb=3.0,
                      margin=0.005, earlier_studies=studies[:1])
    assert "1x the budget: -0.0312 +- 0.0040 holds" in prompt.user_message(context)


def test_the_earlier_section_shares_the_tables_budget():
    entries = earlier_entries(200, 40)
    notes = [JournalNote(3, "a long note " * 40, 0.0, f"2026-night-{s:03d}") for s in range(200)]
    section = earlier.render(entries, notes)
    assert len(section) <= earlier.EARLIER_CHARS
    assert section.startswith("200 earlier sessions of this workspace ran 8000 experiments "
                              "(800 kept)")
    assert "older sessions with" in section and "older notes left out" in section
    # the newest session's kept changes stay; the oldest sessions' discards go first
    assert "2026-night-199:40 | keep | " in section
    assert "2026-night-000:1 | " not in section
    context = Context(files={"train.py": "A = 1\n"}, program="", history=own_history(600),
                      best_bpb=3.0, margin=0.005, earlier=entries, earlier_journal=notes)
    message = prompt.user_message(context)
    assert section in message
    # the session's own table gives the earlier section its room: both together stay within
    # the budget the table alone had (its few heading lines aside, as before)
    table = diagnostics.table(context.history, {}, diagnostics.TABLE_CHARS - len(section))
    assert table in message
    alone = diagnostics.table(context.history, {})
    assert len(alone) > diagnostics.TABLE_CHARS - 500
    assert len(section) + len(table) <= len(alone) + 200
    # a workspace without earlier sessions reads as before
    alone = Context(files={"train.py": "A = 1\n"}, program="", history=own_history(3),
                    best_bpb=3.0, margin=0.005)
    assert "Earlier sessions" not in prompt.user_message(alone)


def test_the_research_tools_reach_earlier_sessions_and_leave_the_own_one_as_it_was():
    entries = earlier_entries(2, 5)
    own = own_history(3)
    context = Context(files={}, program="", history=own, best_bpb=3.0, margin=0.0,
                      earlier=entries)

    def call(name: str, **args) -> research.ToolResult:
        return research.apply(context, name, args)

    assert call("view_experiment", exp=2).text == archive.view(own[1])
    assert call("view_experiment", exp=2).text.startswith("Experiment 2: change 2")
    viewed = call("view_experiment", exp=3, session="2026-night-001")
    assert viewed.text.startswith("Experiment 2026-night-001:3: LEARNING_RATE 0.01 -> 0.03 "
                                  "(earlier session 2026-night-001)")
    assert call("view_experiment", exp="2026-night-000:4").text.startswith(
        "Experiment 2026-night-000:4:")
    missing = call("view_experiment", exp=99, session="2026-night-000")
    assert missing.is_error and "its experiments: 1..5" in missing.text
    unknown = call("view_experiment", exp=1, session="nope")
    assert unknown.is_error and "2026-night-000, 2026-night-001" in unknown.text
    assert call("view_experiment", exp=9).is_error

    found = call("search_experiments", query="LEARNING_RATE").text
    assert found.startswith("no experiment of this session matches")
    assert "2026-night-001:5 | discard" in found
    assert found.index("2026-night-001:5") < found.index("2026-night-000:5")  # newest first
    both = call("search_experiments", query="change A").text
    own_only = archive.search(own, "change A")
    assert both == own_only  # no earlier run mentions it: the output is today's


def test_claude_codes_folder_holds_the_earlier_sessions(tmp_path):
    entries = earlier_entries(2, 3)
    notes = [JournalNote(2, "depth helps", 0.0, "2026-night-001")]
    context = Context(files={"train.py": "A = 1\n"}, program="", history=own_history(2),
                      best_bpb=3.0, margin=0.0, earlier=entries, earlier_journal=notes)
    scratch = Scratch(context, ["train.py"])
    try:
        folder = scratch.root / "experiments"
        assert sorted(p.name for p in folder.iterdir()) == [
            "2026-night-000", "2026-night-001", "exp-0001.txt", "exp-0002.txt"]
        assert sorted(p.name for p in (folder / "2026-night-000").iterdir()) == [
            "exp-0001.txt", "exp-0002.txt", "exp-0003.txt"]
        assert (folder / "2026-night-001" / "exp-0002.txt").read_text().startswith(
            "Experiment 2026-night-001:2: LEARNING_RATE 0.01 -> 0.02")
        assert (folder / "2026-night-001" / "journal.md").read_text() == \
            "[exp 2] depth helps\n\n"
        assert scratch.take_notes() == []  # its own journal is untouched
    finally:
        scratch.remove()
