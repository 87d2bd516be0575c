"""The default corpus's validation text is nowhere train.py can read it, not just not in the cache.

The stdlib corpus validates on packages a trainer never imports; the trainer's sandbox shows a
minimal view of the system and hides those packages in every copy of the standard library in it.
The attack here is a real train.py that walks the whole filesystem it can see looking for pieces
of the validation split; the control runs the same search outside the sandbox.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import trainers
from conftest import FAST, requires_sandbox, run_with

from ratchet.cli import main
from ratchet.engine.data import corpus
from ratchet.engine.runner import experiment, sandbox, workspace_probes

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

# What the attacking train.py runs: every regular file outside /proc, /sys and /dev, searched
# for the samples (each the start of a line) at every line start. For time (a walk reads about
# 2 GB on a machine with torch) it skips files over 16 MB, ELF binaries, static libraries,
# gettext catalogs and compressed archives (zip and wheels, gzip, xz, bzip2, zstd): Python source
# is in them only compiled or compressed. The probe (test_prepare_probe_finds_nothing) greps all.
SEARCH = '''
import os, stat
from operator import itemgetter

SKIP = (b"\\x7fELF", b"!<arch>", b"\\xde\\x12\\x04\\x95", b"\\x95\\x04\\x12\\xde", b"PK\\x03\\x04",
        b"\\x1f\\x8b", b"\\xfd7zX", b"BZh", b"(\\xb5/\\xfd")


def search(samples, roots, limit=16 << 20):
    wanted, cut = set(samples), itemgetter(slice(0, len(samples[0])))
    found, files, size = {}, 0, 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                        continue
                    with open(path, "rb") as f:
                        if f.read(8).startswith(SKIP):
                            continue
                        f.seek(0)
                        data = f.read()
                except OSError:
                    continue
                files, size = files + 1, size + len(data)
                for hit in wanted.intersection(map(cut, data.split(b"\\n"))):
                    found.setdefault(hit, path)
    return found, files, size
'''

ATTACK = '''
import json
samples = [bytes.fromhex(h) for h in {samples!r}]
canaries = [bytes.fromhex(h) for h in {canaries!r}]
roots = ["/" + top for top in sorted(os.listdir("/"))
         if top not in ("proc", "sys", "dev") and not os.path.islink("/" + top)]
found, files, size = search(samples + canaries, roots)
print("SEARCH " + json.dumps({{
    "found": {{s.hex(): found[s] for s in samples if s in found}},
    "canaries": sum(c in found for c in canaries), "files": files, "bytes": size}}), flush=True)
'''


def _search(samples: list[bytes], roots: list[str]) -> tuple[dict, int, int]:
    scope: dict = {}
    exec(SEARCH, scope)
    return scope["search"](samples, roots)


def _canaries(built: corpus.Corpus, count: int = 4) -> list[bytes]:
    """Line starts of the training split (readable by design): proof that the search works."""
    lines = [line[:64] for line in built.train_path.read_bytes().split(b"\n")
             if len(line) >= 64 and line[:64].isascii() and line[:64].decode().isprintable()
             and len(set(line[:64])) >= 16]
    return lines[1000:1000 + 4000:4000 // count][:count]


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A corpus cache of the test's own, so recorded verdicts stay out of the shared one."""
    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "cache"))
    corpus.build("stdlib")
    return tmp_path / "cache"


def _reported(tail: str) -> dict:
    line = next(row for row in tail.splitlines() if row.startswith("SEARCH "))
    return json.loads(line[len("SEARCH "):])


@requires_sandbox
def test_train_py_walking_the_filesystem_finds_no_validation_text(make_workspace):
    """A train.py given 64 pieces of the validation split searches every file it can read for
    them and finds none; it does find pieces of the training split (the canaries), and the same
    search outside the sandbox finds every validation piece in the standard library."""
    ws = make_workspace(**{**FAST, "budget_seconds": 150.0})  # a walk of gigabytes
    built = ws.corpus()
    samples, canaries = built.samples(64), _canaries(built)
    attack = SEARCH + ATTACK.format(samples=[s.hex() for s in samples],
                                    canaries=[c.hex() for c in canaries])
    result = run_with(ws, trainers.honest(cheat=attack))
    assert result.status == "ok", result.error + result.tail
    assert result.sandboxed
    report = _reported(result.tail)
    assert report["found"] == {}, report["found"]
    assert report["canaries"] == len(canaries) == 4  # it did read the standard library
    assert report["files"] > 1000
    print(f"searched {report['files']:,} files, {report['bytes']:,} bytes: 0 of 64 found")

    # the control: the same search over this interpreter's standard library, unsandboxed
    found, _, _ = _search(samples, [sysconfig.get_paths()["stdlib"]])
    assert set(found) == set(samples)
    assert {Path(p).relative_to(sysconfig.get_paths()["stdlib"]).parts[0]
            for p in found.values()} <= set(built.meta["held_out"])


ABSENT = '''
import os, sys, sysconfig
stdlib = sysconfig.get_paths()["stdlib"]
print("HELD " + repr({name: os.listdir(os.path.join(stdlib, name))
                      for name in ("idlelib", "tkinter", "xmlrpc", "pydoc_data")
                      if os.path.isdir(os.path.join(stdlib, name))}), flush=True)
print("ROOT " + repr(sorted(os.listdir("/"))), flush=True)
print("SHM " + repr(os.listdir("/dev/shm")), flush=True)
'''


@requires_sandbox
def test_warm_trainer_sees_the_same_minimal_view(make_workspace):
    """The trainer started ahead of its turn gets the held-out packages hidden too, and neither
    kind sees home folders, other checkouts or another experiment's shared memory."""
    ws = make_workspace(**FAST)
    (ws.root / "train.py").write_text(ABSENT + trainers.honest())
    stage = ws.root / "runs" / "stage"
    warm = experiment.prestart(ws, ws.config(), stage)
    assert warm is not None
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "warm", warm=warm)
    assert result.status == "ok", result.error + result.tail
    log = (ws.root / "runs" / "warm" / "train.log").read_text()
    held = next(row for row in log.splitlines() if row.startswith("HELD "))
    assert eval(held[5:]) == {name: [] for name in ("idlelib", "tkinter", "xmlrpc", "pydoc_data")
                              if (Path(sysconfig.get_paths()["stdlib"]) / name).is_dir()}
    root = eval(next(row for row in log.splitlines() if row.startswith("ROOT "))[5:])
    assert "home" not in root and "var" not in root and "usr" in root
    assert "SHM []" in log


def _old_stdlib_corpus() -> corpus.Corpus:
    """The stdlib corpus as releases before format 2 built it: split by a hash of file names."""
    docs = [(name, path.read_bytes().replace(corpus.SEPARATOR, b""))
            for name, path in corpus._stdlib_files()]
    key = "00000000000000a1"
    old = corpus.Corpus(key, corpus.default_cache_dir() / "data" / key)
    for split, keep in (("train", False), ("val", True)):
        (old.root / split).mkdir(parents=True, exist_ok=True)
        (old.root / split / f"{split}.bin").write_bytes(corpus.SEPARATOR.join(
            data for name, data in docs if corpus._is_validation(name, 5.0) is keep))
    (old.root / "meta.json").write_text(json.dumps({
        "key": old.key, "source": "stdlib", "paths": [], "val_percent": 5.0,
        "val_bytes": old.val_path.stat().st_size}))
    return old


@requires_sandbox
def test_prepare_probe_finds_nothing(make_workspace, own_cache, capsys, monkeypatch):
    """`ratchet prepare` greps everything the trainer's sandbox shows for 64 validation samples,
    smallest files first, prints the verdict, and records it in the corpus's meta.json. (Bounded
    to 40 s here: on a busy machine the largest files may be left, and the verdict says so.)"""
    monkeypatch.setenv("RATCHET_PROBE_SECONDS", "40")
    ws = make_workspace()
    assert main.main(["prepare", "-C", str(ws.root)]) == 0
    out = capsys.readouterr().out
    *_, line, sandbox_line = out.strip().splitlines()
    meta = ws.corpus().meta
    assert meta["sandbox_line"] == sandbox_line  # and what the sandbox takes from root, after it
    assert meta["probe"]["line"] == line and meta["probe"]["leaks"] == []
    assert meta["probe"]["searched"] > 1000
    if meta["probe"]["complete"]:
        assert line.startswith("validation hidden from train.py: 0 of 64 samples found in "), out
        assert meta["val_hidden"] is True
    else:
        assert line.startswith("validation probably hidden from train.py: 0 of 64 samples "
                               "found in "), out
        assert meta["val_hidden"] is None
    # `ratchet init` on the workspace reports the recorded verdict instead of searching again
    assert main.main(["init", str(ws.root)]) == 0
    assert f"validation probe (earlier): {line}" in capsys.readouterr().out


@requires_sandbox
def test_probe_finds_the_old_splits_validation_text(make_workspace, own_cache):
    """The control: the name-hash split's validation files are ordinary stdlib files, readable
    in the same sandbox, and the probe says so (in the first seconds: Python sources go first)."""
    ws = make_workspace()
    old = _old_stdlib_corpus()
    lines = []
    assert workspace_probes.probe_validation(ws, old, seconds=20, echo=lines.append) is False
    assert lines[0].startswith("validation READABLE by train.py: "), lines
    assert old.meta["val_hidden"] is False and old.meta["probe"]["leaks"]
    assert "name-hash split (validation readable by train.py" in corpus.describe(old.meta)


def test_probe_without_sandbox_says_validation_is_readable(make_workspace, own_cache,
                                                          no_sandbox):
    ws = make_workspace()
    lines = []
    assert workspace_probes.probe_validation(ws, again=True, echo=lines.append) is False
    assert lines == [f"validation READABLE by train.py: no sandbox here "
                     f"({sandbox.unavailable_reason()}), so train.py runs as a plain process "
                     f"that can read every file, the validation split included"]
    assert ws.corpus().meta["val_hidden"] is False
