"""The offline agent on autoresearch's real train.py shapes: expressions, tuples, hardware
constants, fractions, the divisibility assert, true rationales and a search seeded per session."""

from __future__ import annotations

from autoresearch_checkout import REAL

from ratchet.engine.agents.base import Context, HistoryEntry, Proposal
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.agents.offline.constants import parse_constants, unsearched
from ratchet.engine.agents.offline.ranges import search_range


def values(text: str) -> dict[str, int | float]:
    return {name: c.value for name, c in parse_constants(text).items()}


def context(text: str, best: float) -> Context:
    return Context(files={"train.py": text}, program="", history=[], best_bpb=best, margin=0.0)


def run(text: str) -> float | None:
    """train.py's head as the real one runs it: None when its assert (or anything) fails."""
    scope: dict = {"MAX_SEQ_LEN": 64}
    try:
        exec("\n".join(line for line in text.split("t0 = time.time()")[0].splitlines()
                       if not line.startswith(("from prepare", "import", "os."))), scope)
    except Exception:
        return None
    found = values(text)
    return (1.0 + (scope["MATRIX_LR"] - 0.04) ** 2 * 100 + abs(scope["DEPTH"] - 6) * 0.01
            + 0.4 * abs(found.get("WARMUP_RATIO", 0.0)) * 10)


def loop(agent: OfflineAgent, steps: int, objective=run, said: list[str] | None = None
         ) -> list[tuple[Proposal, float | None]]:
    best_text, best = REAL, objective(REAL)
    assert best is not None
    agent.observe(Proposal("baseline", {}), HistoryEntry(0, "baseline", "ok", "baseline", best,
                                                         None))
    out = []
    for n in range(1, steps + 1):
        proposal = agent.propose(context(best_text, best), (said or []).append)
        val = objective(proposal.files["train.py"])
        out.append((proposal, val))
        if val is None:
            agent.observe(proposal, HistoryEntry(n, proposal.description, "crash", "crash",
                                                 None, None, proposal.changes))
            continue
        decision = "keep" if val < best else "discard"
        agent.observe(proposal, HistoryEntry(n, proposal.description, "ok", decision, val,
                                             val - best, proposal.changes))
        if val < best:
            best_text, best = proposal.files["train.py"], val
    return out


def test_reads_expressions_and_says_what_it_does_not_search():
    found = values(REAL)
    assert found["TOTAL_BATCH_SIZE"] == 2048 and found["DEPTH"] == 4
    skipped = unsearched(REAL)
    assert "a tuple" in skipped["ADAM_BETAS"] and "not a number" in skipped["WINDOW_PATTERN"]
    assert "hardware" in skipped["H100_BF16_PEAK_FLOPS"]
    assert "hardware" in skipped["DEVICE_BATCH_SIZE"]
    agent, said = OfflineAgent(), []
    agent.propose(context(REAL, 1.5), said.append)
    parsed = said[0]
    assert "TOTAL_BATCH_SIZE=2048" in parsed
    for name in ("ADAM_BETAS", "WINDOW_PATTERN", "H100_BF16_PEAK_FLOPS", "DEVICE_BATCH_SIZE",
                 "SEED"):
        assert name in parsed.split("not searched:")[1]
    assert "H100_BF16_PEAK_FLOPS" not in agent._ranges
    assert "DEVICE_BATCH_SIZE" not in agent._ranges


def test_a_marked_line_is_fixed():
    text = "LEARNING_RATE = 0.01  # ratchet: fixed\nN_LAYER = 2\n"
    assert "fixed" in unsearched(text)["LEARNING_RATE"]
    agent = OfflineAgent()
    for _ in range(3):  # N_LAYER's range holds three other values
        proposal = agent.propose(context(text, 2.0), lambda _: None)
        assert list(proposal.changes) == ["N_LAYER"]


def test_an_expression_is_rewritten_as_its_new_value():
    agent = OfflineAgent()
    for _ in range(30):
        proposal = agent.propose(context(REAL, 1.5), lambda _: None)
        if "TOTAL_BATCH_SIZE" in proposal.changes:
            new = proposal.changes["TOTAL_BATCH_SIZE"]
            assert f"TOTAL_BATCH_SIZE = {new}  # tokens per optimizer step" \
                in proposal.files["train.py"]
            return
    raise AssertionError("TOTAL_BATCH_SIZE was never proposed")


def test_fractions_stay_within_zero_and_one():
    for name, value in (("WARMDOWN_RATIO", 0.5), ("FINAL_LR_FRAC", 0.9), ("MIX", 0.3),
                        ("KEEP_FRACTION", 1.0)):
        dist = search_range(name, value)
        assert dist.low >= 0.0 and dist.high <= 1.0, (name, dist)
    assert search_range("ASPECT_RATIO", 64).high == 128  # a whole-number ratio is no fraction
    text = REAL.replace("WARMUP_RATIO = 0.0", "WARMUP_RATIO = 0.0\nWARMDOWN_RATIO = 0.5")
    agent = OfflineAgent(seed=5)
    for _ in range(40):
        proposal = agent.propose(context(text, 1.5), lambda _: None)
        if "WARMDOWN_RATIO" in proposal.changes:
            assert 0.0 <= proposal.changes["WARMDOWN_RATIO"] <= 1.0


def test_what_crashed_is_not_proposed_again_nor_past_it():
    for seed in (0, 1, 2):
        agent = OfflineAgent(seed=seed)
        crashed: list[tuple[str, float, float]] = []
        for proposal, val in loop(agent, 30):
            ((name, value),) = proposal.changes.items()
            old = float(proposal.description.split()[1])
            for c_name, c_old, c_to in crashed:
                way = 1 if c_to > c_old else -1
                if c_name == name and (value - c_to) * way >= 0 and (old - c_old) * way <= 0:
                    raise AssertionError(f"seed {seed}: {proposal.description} after "
                                         f"{c_name} {c_old} -> {c_to} crashed")
            if val is None:
                crashed.append((name, old, float(value)))


def test_rationales_are_true():
    said: list[str] = []
    for seed in range(4):
        agent = OfflineAgent(seed=seed)
        varied: set[str] = set()
        for proposal, _val in loop(agent, 20, said=said):
            ((name, _),) = proposal.changes.items()
            if name in varied:
                assert "has not been varied" not in proposal.rationale, proposal.rationale
            varied.add(name)


def test_each_session_explores_differently():
    def first(session: str) -> list[str]:
        agent = OfflineAgent(seed=0)
        agent.start_session(session)
        return [p.description for p, _ in loop(agent, 4)]

    assert first("20260101-000000-a-0001") == first("20260101-000000-a-0001")
    assert first("20260101-000000-a-0001") != first("20260102-000000-b-0002")


def test_a_constant_whose_last_two_changes_lost_is_not_proposed_a_third_time_in_a_row():
    for seed in range(6):
        out = loop(OfflineAgent(seed=seed), 16)
        for i in range(2, len(out)):
            names = [next(iter(p.changes)) for p, _ in out[i - 2: i + 1]]
            lost = all(val is not None and val > run(REAL) for _, val in out[i - 2: i])
            assert not (len(set(names)) == 1 and lost), \
                f"seed {seed}: {[p.description for p, _ in out[i - 2: i + 1]]}"
