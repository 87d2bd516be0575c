"""Shared fixtures: a private corpus cache per test session and ready-made workspaces."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import git
import psutil
import pytest
import trainers

from ratchet.engine.runner import experiment, sandbox
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

# `make test` runs several pytest workers on a few cores. One thread per torch process (inherited
# by every training and evaluation child) keeps real training from thrashing: two OpenMP pools
# of two threads each on two cores train twenty times slower, not two.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep test corpora and compile caches out of the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("ratchet-cache")
    old = os.environ.get("RATCHET_CACHE_DIR")
    os.environ["RATCHET_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("RATCHET_CACHE_DIR", None)
    else:
        os.environ["RATCHET_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def template_workspace(tmp_path_factory) -> Path:
    """One CPU workspace on the stdlib corpus, initialised once; copy it with `make_workspace`."""
    root = tmp_path_factory.mktemp("template") / "ws"
    layout.init(root, device="cpu", echo=lambda *_: None)
    # The suites judge their trainers by full runs; early stopping (on by default) has its own
    # (test_early_stopping.py), and the workspaces `ratchet init` makes in tests keep it on.
    ws = layout.Workspace(root)
    config = ws.config()
    config.loop.early_stop = False
    configmod.save(root, config)
    repo = git.Repo(root)
    repo.index.add([configmod.CONFIG_NAME])
    repo.index.commit("tests: every run goes to the end")
    repo.close()
    return root


@pytest.fixture
def make_workspace(template_workspace, tmp_path):
    """A fresh copy of the template workspace, optionally with settings changed."""

    def make(name: str = "ws", **settings) -> layout.Workspace:
        """Settings name keys of [experiment] or [data], e.g. budget_seconds=3."""
        root = tmp_path / name
        shutil.copytree(template_workspace, root, symlinks=True)
        ws = layout.Workspace(root)
        if settings:
            config = ws.config()
            for key, value in settings.items():
                section = config.experiment if hasattr(config.experiment, key) else config.data
                assert hasattr(section, key), key
                setattr(section, key, value)
            configmod.save(root, config)
        return ws

    return make


@pytest.fixture
def no_sandbox(monkeypatch):
    """Run children as plain processes, as on a machine without bubblewrap."""
    monkeypatch.setenv("RATCHET_NO_SANDBOX", "1")
    sandbox.bwrap_path.cache_clear()
    yield
    sandbox.bwrap_path.cache_clear()


requires_sandbox = pytest.mark.skipif(
    sandbox.bwrap_path() is None,
    reason=f"no sandbox here: {sandbox.unavailable_reason()}",
)


def waiting_children(settle: float = 10.0) -> list[psutil.Process]:
    """This process's children that are evaluators or training processes started ahead of need
    and still running after `settle` seconds (a sandboxed child goes a moment after its bwrap
    parent)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if child.status() != psutil.STATUS_ZOMBIE and (
                    ("evaluate" in line and "--wait" in line)
                    or any("runpy.run_path" in arg for arg in line)):
                found.append(child)
    return psutil.wait_procs(found, timeout=settle)[1] if found else []


# Settings for experiments that train in a second and score a short slice.
FAST = {"budget_seconds": 16.0, "eval_tokens": 65536}


def run_with(ws: layout.Workspace, source: str, tmp_name: str = "exp"):
    (ws.root / "train.py").write_text(source)
    return experiment.run(ws, ws.config(), ws.root / "runs" / tmp_name)


@pytest.fixture(scope="session")
def honest_bpb(template_workspace, tmp_path_factory) -> float:
    """The metric of the honest bigram model, the reference every cheat is compared with
    (measured once: the model is deterministic)."""
    root = tmp_path_factory.mktemp("honest") / "ws"
    shutil.copytree(template_workspace, root, symlinks=True)
    ws = layout.Workspace(root)
    config = ws.config()
    for key, value in FAST.items():
        section = config.experiment if hasattr(config.experiment, key) else config.data
        setattr(section, key, value)
    configmod.save(root, config)
    result = run_with(ws, trainers.honest())
    assert result.status == "ok", result.error + result.tail
    assert 2.0 < result.val_bpb < 6.0
    return result.val_bpb


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked slow (real sessions, minutes each) go first, each kept whole
    (its module fixtures are set up once): the workers of `make test` share them out while
    plenty of short tests remain to even out the end."""
    slow = {item.module for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module not in slow)
