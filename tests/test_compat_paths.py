"""A compat session's start and end: ratchet.toml holds only what applies to a checkout, and
the branch the checkout is left on is said, at the end and when the next session starts."""

from __future__ import annotations

import subprocess
import sys

import autoresearch_checkout as ar
import git

from ratchet.engine.runner import compat
from ratchet.engine.workspace import config as configmod


def ratchet(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_compat_ratchet_toml_has_no_data_section(tmp_path):
    checkout = ar.make(tmp_path / "autoresearch", venv=False)
    compat.prepare_checkout(checkout, echo=lambda _: None)
    text = (checkout / configmod.CONFIG_NAME).read_text()
    assert "[data]" not in text and "[experiment]" in text and "[agent]" in text
    assert configmod.load(checkout).experiment.compat == "autoresearch"
    # a workspace's own file still has it
    configmod.save(tmp_path, configmod.Config())
    assert "[data]" in (tmp_path / configmod.CONFIG_NAME).read_text()


def test_the_branch_a_compat_session_leaves_is_said(tmp_path):
    checkout = ar.make(tmp_path / "autoresearch")
    done = ratchet("run", "--compat", "autoresearch", "--headless", "--max-experiments", "1",
                   "--tag", "c1", cwd=checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    branch = git.Repo(checkout).active_branch.name
    (end,) = [line for line in done.stdout.splitlines() if line.startswith("session ended")]
    assert f"the checkout is on {branch}" in end and "git checkout master" in end, end
    again = ratchet("run", "--compat", "autoresearch", "--headless", "--max-experiments", "1",
                    "--tag", "c2", cwd=checkout)
    assert again.returncode == 0, again.stdout + again.stderr
    if branch != "master":  # the next session starts from where the last one left it: said
        assert f"branches from {branch}" in again.stdout, again.stdout
