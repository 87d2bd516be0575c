"""The ratchet's git moves, on the engine thread: a proposal committed off the branch, a
candidate rebased onto the current best, and the files of the best.

The ratchet stays one line that only moves forward:
- A candidate is a commit whose parent is the best commit when it was proposed (`based_on`).
- A candidate still waiting for a worker when the best moves is rebased onto the new best (its
  change re-applied with a 3-way file merge); if the change conflicts, or the new best already
  holds it, it is dropped (`proposal_dropped`, with the reason).
- A winner based on an older best is rebased onto the current best before its further run, and
  only runs on the current best count (its keep rule's call).
- A keep moves the branch to a commit whose parent is the current best (`Recorder.end`).
"""

from __future__ import annotations

import git

from ratchet.engine.loop import gitops
from ratchet.engine.loop.handoff import RawProposal
from ratchet.engine.loop.jobs import Candidate
from ratchet.engine.loop.recorder import Recorder
from ratchet.engine.protocol import schema


class Moves:
    def __init__(self, repo: git.Repo, editable: list[str], recorder: Recorder):
        self.repo, self.editable, self.rec = repo, editable, recorder

    @property
    def best(self) -> str:
        return self.rec.state.best_commit

    def files_at(self, sha: str) -> dict[str, str]:
        return gitops.files_at(self.repo, sha, self.editable)

    def measured_on_best(self, commit: str) -> bool:
        """Whether the commit sits on the current best (its parent is the best)."""
        return gitops.parent_of(self.repo, commit) == self.best

    def commit(self, raw: RawProposal, tally) -> Candidate:
        """Commit a proposal off the branch and record it."""
        p = raw.proposal
        commit = gitops.commit_tree(self.repo, raw.based_on, p.files,
                                    f"exp {raw.exp}: {p.description}")
        diff = gitops.diff(self.repo, raw.based_on, commit)
        self.rec.emit(schema.PROPOSAL, exp=raw.exp, description=p.description,
                      rationale=p.rationale, diff=diff,
                      files=sorted(p.files), based_on=raw.based_on, changes=p.changes,
                      steer=raw.steer, commit=commit,
                      **({"tried_before": p.tried_before} if p.tried_before else {}))
        return Candidate(raw.exp, p, commit, raw.based_on, tally, diff)

    def onto_best(self, c: Candidate, stage: str) -> bool:
        """Rebase the candidate onto the current best if it is based on an older one; one
        that cannot be is dropped (a waiting winner with its rows)."""
        best = self.best
        if c.based_on == best:
            return True
        commit, why = gitops.rebase_commit(self.repo, c.commit, best,
                                           f"exp {c.exp}: {c.proposal.description}")
        if commit is None:
            self.rec.dropped(c.exp, why, c.proposal.description, stage, c.proposal.changes)
            return False
        self.rec.emit(schema.PROPOSAL_REBASED, exp=c.exp, commit=commit, based_on=best,
                      previous_commit=c.commit, stage=stage,
                      diff=gitops.diff(self.repo, best, commit))
        c.commit, c.based_on = commit, best
        return True

    def readable(self, commit: str, names: list[str]) -> dict[str, str] | None:
        """The named files at a recorded commit, or None where git no longer has them."""
        try:
            tree = self.repo.commit(commit)
            files = {name: gitops.text_at(tree, name) for name in names}
        except (ValueError, git.GitError):
            return None
        return None if not files or None in files.values() else files
