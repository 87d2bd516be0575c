"""`ratchet init`, `prepare` and the CLI's error contract: one line on stderr, exit status 2."""

from __future__ import annotations

import ast
import contextlib
from importlib import resources
from pathlib import Path

import git
import pytest

from ratchet.cli import main
from ratchet.engine.data import corpus, profiles
from ratchet.engine.workspace import config as configmod

WORKSPACE_FILES = {"train.py", "prepare.py", "program.md", "ratchet.toml", ".gitignore"}


@pytest.fixture(autouse=True)
def _no_probe(monkeypatch):
    """The validation probe searches the whole filesystem (test_hidden_validation.py runs it)."""
    monkeypatch.setenv("RATCHET_PROBE_SECONDS", "0")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ratchet: error:"), err
    return lines[0]


def _text_dir(root: Path, count: int = 8) -> Path:
    """A small text corpus whose validation split is longer than one evaluation window."""
    root.mkdir(parents=True)
    for i in range(count):
        sub = root / ("sub" if i % 2 else ".")
        sub.mkdir(exist_ok=True)
        (sub / f"doc{i}.txt").write_text("".join(f"document {i}, line {j}: some words here\n"
                                                 for j in range(60)))
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".git" not in p.parts}


def _constants(source: str) -> dict:
    values = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            with contextlib.suppress(ValueError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_init_creates_committed_workspace(tmp_path, capsys):
    """A new workspace holds the five files, committed once, with nothing left uncommitted."""
    target = tmp_path / "ws"
    code, out, _ = _run(capsys, "init", target, "--device", "cpu")
    assert code == 0
    assert "workspace ready" in out
    assert "split: stdlib, validation = held-out packages" in out
    assert "validation probe" in out  # skipped here; test_hidden_validation.py runs it

    assert {p.name for p in target.iterdir()} == WORKSPACE_FILES | {".git"}
    repo = git.Repo(target)
    assert len(list(repo.iter_commits())) == 1
    assert set(repo.git.ls_files().splitlines()) == WORKSPACE_FILES
    assert not repo.is_dirty(untracked_files=True)
    assert "runs/" in (target / ".gitignore").read_text().splitlines()

    config = configmod.load(target)
    assert config.experiment.device == "cpu"
    assert config.experiment.budget_seconds == 20.0
    assert config.data.source == "stdlib"
    assert config.data.key  # data prepared and recorded
    assert (corpus.default_cache_dir() / "data" / config.data.key / "meta.json").is_file()


def test_cpu_workspace_gets_cpu_profile(tmp_path, capsys):
    """On CPU the template's GPU-sized model would not learn in 20 s: the CPU profile is used."""
    target = tmp_path / "ws"
    assert _run(capsys, "init", target, "--device", "cpu", "--text", _text_dir(tmp_path / "t"))[0] \
        == 0
    values = _constants((target / "train.py").read_text())
    for name, expected in profiles.CPU.items():
        assert values[name] == expected, name
    template = _constants(resources.files("ratchet.model").joinpath("train.py").read_text())
    assert values["MLP_RATIO"] == template["MLP_RATIO"]  # other constants untouched


def test_prepare_py_is_the_packaged_harness(tmp_path, capsys):
    """The frozen harness is copied byte for byte; the integrity check depends on it."""
    target = tmp_path / "ws"
    assert _run(capsys, "init", target, "--device", "cpu", "--text", _text_dir(tmp_path / "t"))[0] \
        == 0
    packaged = resources.files("ratchet.model").joinpath("prepare.py").read_bytes()
    assert (target / "prepare.py").read_bytes() == packaged


def test_init_refuses_non_empty_folder(tmp_path, capsys):
    """Init must never write into a folder holding someone's files."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("my notes\n")
    (target / "sub").mkdir()
    (target / "sub" / "train.py").write_text("print('mine')\n")
    before = _snapshot(target)

    code, _, err = _run(capsys, "init", target, "--device", "cpu")
    assert code == 2
    assert "not empty" in _one_error_line(err)
    assert _snapshot(target) == before
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt", "sub"]


def test_init_existing_workspace_changes_nothing(tmp_path, capsys):
    """Running init again in a workspace is safe: it checks the data and leaves git clean."""
    target = tmp_path / "ws"
    assert _run(capsys, "init", target, "--device", "cpu", "--text", _text_dir(tmp_path / "t"))[0] \
        == 0
    repo = git.Repo(target)
    head = repo.head.commit.hexsha
    before = _snapshot(target)

    code, out, _ = _run(capsys, "init", target, "--device", "cpu")
    assert code == 0
    assert "already a Ratchet workspace" in out
    assert repo.head.commit.hexsha == head
    assert not repo.is_dirty(untracked_files=True)
    assert _snapshot(target) == before


def test_init_with_text_corpus(tmp_path, capsys):
    """--text trains on the user's files and the settings record it; --budget is kept."""
    text = _text_dir(tmp_path / "t")
    target = tmp_path / "ws"
    assert _run(capsys, "init", target, "--device", "cpu", "--text", text,
                "--budget", "45")[0] == 0
    config = configmod.load(target)
    assert config.data.source == "text"
    assert config.data.paths == [str(text.resolve())]
    assert config.experiment.budget_seconds == 45.0
    expected, cached = corpus.build("text", [text])
    assert cached and config.data.key == expected.key
    assert 'source = "text"' in (target / "ratchet.toml").read_text()


@pytest.mark.parametrize("existing", [False, True])
def test_init_with_missing_text_path_leaves_nothing(tmp_path, capsys, existing):
    """A bad data path is one error line and no half-made workspace (new or empty folder)."""
    target = tmp_path / "ws"
    if existing:
        target.mkdir()
    missing = tmp_path / "no-such-dir"
    code, _, err = _run(capsys, "init", target, "--device", "cpu", "--text", missing)
    assert code == 2
    assert str(missing) in _one_error_line(err)
    if existing:
        assert list(target.iterdir()) == []
    else:
        assert not target.exists()


def test_experiment_outside_workspace(tmp_path, capsys, monkeypatch):
    """Commands that need a workspace say so in one line instead of a traceback."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "experiment")
    assert code == 2
    assert "ratchet init" in _one_error_line(err)

    code, _, err = _run(capsys, "experiment", "-C", tmp_path / "elsewhere")
    assert code == 2
    _one_error_line(err)


def test_prepare_switches_data(make_workspace, tmp_path, capsys):
    """`ratchet prepare --text` points the workspace at new data; `--stdlib` switches back."""
    ws = make_workspace()
    stdlib_key = ws.config().data.key
    text = _text_dir(tmp_path / "t")

    code, out, _ = _run(capsys, "prepare", "-C", ws.root, "--text", text)
    assert code == 0
    config = ws.config()
    assert config.data.source == "text"
    assert config.data.paths == [str(text.resolve())]
    assert config.data.key != stdlib_key
    assert config.data.key == corpus.build("text", [text])[0].key
    assert config.data.key in out
    assert ws.corpus().val_path.is_file()

    code, _, _ = _run(capsys, "prepare", "-C", ws.root, "--stdlib")
    assert code == 0
    assert ws.config().data.source == "stdlib"
    assert ws.config().data.key == stdlib_key


def test_prepare_with_missing_path_keeps_settings(make_workspace, tmp_path, capsys):
    """A failed prepare leaves ratchet.toml as it was."""
    ws = make_workspace()
    before = ws.config_path.read_bytes()
    code, _, err = _run(capsys, "prepare", "-C", ws.root, "--text", tmp_path / "missing")
    assert code == 2
    _one_error_line(err)
    assert ws.config_path.read_bytes() == before


@pytest.mark.parametrize("argv", [
    ["init", "X", "--budget", "-3"],
    ["init", "X", "--budget", "0"],
    ["init", "X", "--budget", "soon"],
    ["init", "X", "--device", "tpu"],
])
def test_bad_init_options_are_argparse_errors(tmp_path, capsys, argv):
    """Bad option values stop before anything is created, with one line (usage on --help)."""
    argv = [str(tmp_path / "ws") if a == "X" else a for a in argv]
    with pytest.raises(SystemExit) as info:
        main.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and err.startswith("ratchet: error: ") and err.count("\n") == 1
    assert argv[2] in err
    assert not (tmp_path / "ws").exists()
