"""Named datasets: shards downloaded with huggingface_hub from a hub on 127.0.0.1
(tests/fake_hub.py), verified, cached once for every workspace, hidden from train.py; and a
workspace on one that runs the loop. No test reaches the internet."""

from __future__ import annotations

import json
import socket
import time

import git
import pytest
from conftest import requires_sandbox
from fake_hub import FakeHub, parquet_bytes, stories

from ratchet.cli import main
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.data import corpus, datasets
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.runner import experiment
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

TINY = datasets.get("tinystories")


@pytest.fixture(scope="module")
def hub():
    """TinyStories' real file names, each a small shard of stories."""
    server = FakeHub()
    for i, name in enumerate(TINY.train):
        server.add(TINY.repo, name, parquet_bytes(stories(i, 150)))
    server.add(TINY.repo, TINY.val[0], parquet_bytes(stories(99, 60)))
    yield server
    server.close()


@pytest.fixture
def endpoint(hub, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))  # the client's own files
    monkeypatch.setenv("RATCHET_PROBE_SECONDS", "0")
    hub.requests.clear()
    return hub


def _quiet(*_args) -> None:
    pass


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_fetch_downloads_each_shard_once_into_the_shared_cache(endpoint, tmp_path):
    train, val = datasets.fetch("tinystories", 2, tmp_path, echo=_quiet)
    assert [p.name for p, _ in train] == [name.split("/")[-1] for name in TINY.train[:2]]
    assert [p.name for p, _ in val] == [TINY.val[0].split("/")[-1]]
    assert all(str(p).startswith(str(tmp_path / "data" / "hub")) for p, _ in train + val)
    assert len(endpoint.downloads()) == 3
    # a second workspace, or a larger --shards, fetches only what the cache lacks
    again, _ = datasets.fetch("tinystories", 3, tmp_path, echo=_quiet)
    assert again[:2] == train
    assert len(endpoint.downloads()) == 4 and TINY.train[2] in endpoint.downloads()[-1]


def test_a_connection_cut_mid_file_resumes_where_it_stopped(endpoint, tmp_path):
    endpoint.cut(TINY.repo, TINY.train[0])
    train, _ = datasets.fetch("tinystories", 1, tmp_path, echo=_quiet)
    assert train[0][0].read_bytes() == endpoint.files[(TINY.repo, TINY.train[0])]
    ranged = [path for path in endpoint.downloads() if TINY.train[0] in path]
    assert len(ranged) == 2  # the cut transfer and the rest, fetched with a Range request


def test_a_corrupt_shard_is_removed_and_reported_in_one_line(endpoint, tmp_path):
    endpoint.corrupt(TINY.repo, TINY.val[0])
    try:
        with pytest.raises(datasets.DatasetError, match="corrupt") as error:
            datasets.fetch("tinystories", 1, tmp_path, echo=_quiet)
    finally:
        endpoint.corrupted.clear()
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "data" / "hub").rglob(TINY.val[0].split("/")[-1]))
    _, val = datasets.fetch("tinystories", 1, tmp_path, echo=_quiet)  # the next try mends it
    assert val[0][0].read_bytes() == endpoint.files[(TINY.repo, TINY.val[0])]


def test_offline_is_one_line_and_the_cache_still_serves(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    started = time.monotonic()
    with pytest.raises(datasets.DatasetError, match="no connection") as error:
        datasets.fetch("tinystories", 1, tmp_path, echo=_quiet)
    assert "\n" not in str(error.value) and time.monotonic() - started < 10
    monkeypatch.setenv("HF_ENDPOINT", endpoint.url)
    online = datasets.fetch("tinystories", 1, tmp_path, echo=_quiet)
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    assert datasets.fetch("tinystories", 1, tmp_path, echo=_quiet) == online


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "fineweb"], "unknown dataset 'fineweb' (known: climbmix, tinystories)"),
    (["--dataset", "tinystories", "--shards", "9"], "--shards must be from 1 to 4"),
    (["--shards", "2"], "--shards needs a named dataset"),
    (["--dataset", "tinystories", "--tokenizer", "bpe", "--vocab-size", "100"],
     "vocab_size must be from 257"),
])
def test_bad_dataset_options_fail_in_one_line_and_create_nothing(endpoint, tmp_path, capsys,
                                                                  args, message):
    target = tmp_path / "ws"
    assert main.main(["init", str(target), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not target.exists()


def test_a_damaged_shard_fails_prepare_in_one_line_and_keeps_the_workspace(endpoint, tmp_path,
                                                                           capsys, monkeypatch):
    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "cache"))
    target, text = tmp_path / "ws", tmp_path / "text"
    text.mkdir()
    for i, story in enumerate(stories(7, 40)):
        (text / f"{i}.txt").write_text(story * 20)
    assert main.main(["init", str(target), "--device", "cpu", "--text", str(text)]) == 0
    before = (target / "ratchet.toml").read_text()
    real = endpoint.files[(TINY.repo, TINY.val[0])]
    endpoint.add(TINY.repo, TINY.val[0], b"PAR1 not really parquet")
    try:
        capsys.readouterr()
        assert main.main(["prepare", "-C", str(target), "--dataset", "tinystories"]) == 2
    finally:
        endpoint.add(TINY.repo, TINY.val[0], real)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot read column 'text' of shard" in err, err
    assert "removed it from the cache" in err
    assert (target / "ratchet.toml").read_text() == before
    # the next try downloads the shard again, as the hub now serves it, and switches
    assert main.main(["prepare", "-C", str(target), "--dataset", "tinystories"]) == 0
    assert layout.Workspace(target).config().data.source == "dataset"


@pytest.mark.slow
def test_init_on_a_named_dataset_runs_the_loop(endpoint, tmp_path, capsys):
    root = tmp_path / "ws"
    assert main.main(["init", str(root), "--dataset", "tinystories", "--device", "cpu",
                      "--tokenizer", "bpe", "--vocab-size", "320", "--budget", "1"]) == 0
    out = capsys.readouterr().out
    assert "dataset: tinystories (roneneldan/TinyStories), 1 training + 1 validation" in out
    assert "tokenizer: BPE, 320 tokens" in out
    ws = layout.Workspace(root)
    config = ws.config()
    assert (config.data.source, config.data.dataset, config.data.tokenizer) == \
        ("dataset", "tinystories", "bpe")
    meta = ws.corpus(config).meta
    assert meta["split"] == "dataset-split" and meta["shards"]["val"] == \
        [TINY.val[0].split("/")[-1]]
    # a short loop: one baseline run and one proposal, on the template train.py
    config.loop.baseline_seeds, config.loop.confirm = 1, False
    config.loop.rule = "margin"  # one run decides: the data, not the rule, is under test
    config.data.eval_tokens = 8192
    configmod.save(root, config)
    repo = git.Repo(root)
    repo.index.add(["ratchet.toml"])
    repo.index.commit("short loop")
    options = RunOptions(session="s-data", tag="data", max_experiments=1)
    Session(ws, ws.config(), options, OfflineAgent(seed=1)).run()
    log = [json.loads(line) for line in
           (ws.runs_dir() / "s-data" / "events.jsonl").read_text().splitlines()]
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline", "candidate"]
    baseline = ends[0]
    assert baseline["status"] == "ok", baseline["result"]["error"]
    assert 0 < baseline["val_bpb"] < 8.0  # well below a uniform byte model in one second
    assert log[-1]["type"] == "session_end"


# What a train.py can see of a dataset workspace's corpus: it prints, then stops.
LOOK = '''
import json, os
paths = {paths!r}
print("SEEN " + json.dumps({{name: os.path.exists(p) for name, p in paths.items()}}), flush=True)
raise SystemExit(1)
'''


@requires_sandbox
def test_train_py_sees_the_training_tokens_but_no_shard_and_no_validation(endpoint, tmp_path):
    root = tmp_path / "ws"
    layout.init(root, device="cpu", dataset="tinystories", tokenizer_kind="bpe", vocab_size=300,
                echo=_quiet)
    ws = layout.Workspace(root)
    built, tokens = ws.corpus(), ws.tokens()
    shards = sorted(str(p) for p in datasets.hub_cache(corpus.default_cache_dir()).rglob("*")
                    if p.is_file() or p.is_symlink())
    assert any(p.endswith(".parquet") for p in shards)
    paths = {"train tokens": str(tokens.train_path), "tokenizer": str(tokens.tokenizer_path),
             "val tokens": str(tokens.val_path), "val text": str(built.val_path),
             "meta": str(built.root / "meta.json"), **{f"hub {i}": p for i, p in enumerate(shards)}}
    (root / "train.py").write_text(LOOK.format(paths=paths))
    result = experiment.run(ws, ws.config(), tmp_path / "exp", budget=1.0)
    line = next(li for li in result.tail.splitlines() if li.startswith("SEEN "))
    seen = json.loads(line[5:])
    assert seen.pop("train tokens") and seen.pop("tokenizer")
    assert not any(seen.values()), seen
