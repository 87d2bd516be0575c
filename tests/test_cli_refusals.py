"""What `ratchet` refuses, it refuses up front in one line, `ratchet: error: ...`: a bad
argument (usage stays on --help), a ratchet.toml the engine cannot run on (before any branch
is made), and an engine that refused to start (said in engine.log) is not reported started."""

from __future__ import annotations

import git
import pytest
from fault_checks import fill, keeping_workspace, mount_tmpfs, ratchet, unmount

from ratchet.engine.protocol import paths


def one_error_line(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ratchet: error: "), \
        done.stderr
    return done.stderr


@pytest.mark.parametrize("args", [
    ["run", "--budget", "soon"],
    ["run", "--agent", "nobody"],
    ["ls", "--no-such-flag"],
    ["frobnicate"],
    [],
    ["ctl"],
    ["report", "a", "b"],
])
def test_a_bad_argument_is_one_line(tmp_path, args):
    one_error_line(ratchet(*args, cwd=tmp_path, timeout=60))


def test_help_still_shows_the_usage(tmp_path):
    for args in (["--help"], ["run", "--help"]):
        done = ratchet(*args, cwd=tmp_path, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("usage: ratchet"), done.stdout


@pytest.mark.parametrize("text", ["", '[experiment]\ndevice = "cpu"\n'],
                         ids=["zero-bytes", "no-data-section"])
def test_a_config_the_engine_cannot_run_on_is_refused_before_any_branch(make_workspace, text):
    ws = make_workspace("bare")
    (ws.root / "ratchet.toml").write_text(text)
    repo = git.Repo(ws.root)
    repo.index.add(["ratchet.toml"])
    repo.index.commit("a bare ratchet.toml")
    heads = {h.name for h in repo.heads}
    line = one_error_line(ratchet("run", "--headless", "--max-experiments", "1", "--tag", "bare",
                                  cwd=ws.root, timeout=120))
    assert "ratchet.toml" in line or "prepare" in line, line
    assert {h.name for h in repo.heads} == heads  # no branch was made
    assert paths.sessions(ws.runs_dir()) == []


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    why = mount_tmpfs(disk, "16m")
    if why:
        pytest.skip(why)
    yield disk
    unmount(disk)


def test_an_engine_that_refuses_to_start_is_reported_not_started(small_disk,
                                                                  template_workspace):
    ws = keeping_workspace(small_disk / "ws", template_workspace)
    filler = small_disk / "filler"
    size = fill(filler)
    # room for `ratchet run`'s reserve, not for the engine's own fresh one beside it
    with open(filler, "r+b") as f:
        f.truncate(size - (3 << 19))
    done = ratchet("run", "--headless", "--tag", "full", cwd=ws.root, timeout=120)
    assert "engine started" not in done.stdout, done.stdout
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "ratchet: error: the disk is full"), done.stderr
