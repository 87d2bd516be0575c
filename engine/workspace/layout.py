"""A research workspace: a git repository holding train.py, prepare.py, program.md, ratchet.toml."""

from __future__ import annotations

import ast
import hashlib
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import git

from ratchet.engine.data import corpus, datasets, profiles, tokenizer
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace.gitrepo import AUTHOR

HARNESS = "prepare.py"
TRAIN = "train.py"
PROGRAM = "program.md"
IGNORED = ["runs/", "results.tsv", "__pycache__/", "*.pyc"]


class WorkspaceError(Exception):
    """Not a workspace, or one that cannot be used as it is; the message is one line."""


def template_text(name: str) -> str:
    """A file of the workspace template (ratchet.model): train.py, prepare.py or program.md."""
    return resources.files("ratchet.model").joinpath(name).read_text()


# Earlier releases' harnesses, whose train-facing half (what train.py imports) this one's
# contains: a workspace made by them keeps working (its train.py keeps the wall clock, and on
# the CPU clock the engine still measures CPU time). Evaluation always runs Ratchet's own copy.
EARLIER_HARNESS_SHA256 = frozenset({
    "01649b9a255d79c7259d82e8a3ba133f62867bcfda724a87bf61294c7e1c9402",
    "b4730bfc0ca2706ae8452def61e8894d69c37e1722ade0b7c0706da0a747dee4",  # bytes only, no clock()
    "3d8a7228523130d7ff60e0adfdb7cdc3631d47ab2ea0beb010a40f8f23a14749",  # this one, longer comments
})


def harness_sha256() -> str:
    """Hash of the frozen harness this version of Ratchet ships."""
    return hashlib.sha256(template_text(HARNESS).encode()).hexdigest()


def harness_path() -> Path:
    with resources.as_file(resources.files("ratchet.model").joinpath(HARNESS)) as path:
        return Path(path)


def with_constants(source: str, values: dict) -> str:
    """Python source with the named top-level `NAME = value` constants replaced."""
    lines = source.splitlines(keepends=True)
    found = set()
    for node in reversed(ast.parse(source).body):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id in values
                and node.value.lineno == node.value.end_lineno):
            name, row = node.targets[0].id, node.value.lineno - 1
            line = lines[row]
            lines[row] = (line[: node.value.col_offset] + repr(values[name])
                          + line[node.value.end_col_offset:])
            found.add(name)
    missing = set(values) - found
    if missing:
        raise ValueError(f"train.py template lacks constants {sorted(missing)}")
    return "".join(lines)


@dataclass
class Workspace:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / configmod.CONFIG_NAME

    def config(self) -> configmod.Config:
        return configmod.load(self.root)

    def corpus(self, config: configmod.Config | None = None) -> corpus.Corpus:
        config = config or self.config()
        if not config.data.key:
            raise WorkspaceError(f"{configmod.CONFIG_NAME} names no prepared data (its [data] "
                                 f"key); run `ratchet prepare`")
        found = corpus.Corpus(config.data.key,
                              corpus.default_cache_dir() / "data" / config.data.key)
        if not (found.root / "meta.json").is_file():
            raise WorkspaceError(f"prepared data {config.data.key} is not in the cache "
                                 f"({found.root}); run `ratchet prepare`")
        return found

    def tokens(self, config: configmod.Config | None = None) -> tokenizer.Tokens:
        """The prepared corpus through the workspace's tokenizer (bytes, or its BPE)."""
        config = config or self.config()
        data = config.data
        tokens = tokenizer.Tokens(self.corpus(config).root,
                                  data.vocab_size if data.tokenizer == "bpe" else 256)
        if not tokens.ready:
            raise WorkspaceError(f"the {tokens.name} tokens of corpus {data.key} are not in the "
                                 f"cache; run `ratchet prepare`")
        return tokens

    def harness_intact(self) -> bool:
        path = self.root / HARNESS
        if not path.is_file():
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() in {harness_sha256(),
                                                                 *EARLIER_HARNESS_SHA256}

    def restore_harness(self) -> None:
        (self.root / HARNESS).write_text(template_text(HARNESS))

    def runs_dir(self) -> Path:
        return self.root / "runs"


def find(start: Path | None = None) -> Workspace:
    """The workspace containing `start` (default: the current folder)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / configmod.CONFIG_NAME).is_file():
            return Workspace(folder)
    raise WorkspaceError(f"{here} is not inside a Ratchet workspace; create one with "
                         f"`ratchet init DIR`")


def prepare_data(ws: Workspace, source: str | None = None, paths: list[str] | None = None,
                 column: str | None = None, val_percent: float | None = None, *,
                 dataset: str | None = None, shards: int | None = None,
                 tokenizer_kind: str | None = None, vocab_size: int | None = None,
                 echo=print) -> corpus.Corpus:
    """Build (or reuse) the corpus for the workspace, and its BPE tokens if it uses them, and
    record the corpus's key in ratchet.toml. Nothing changes in ratchet.toml on an error."""
    config = ws.config()
    data = config.data
    changed = any(v is not None for v in (source, column, val_percent, dataset, shards,
                                          tokenizer_kind, vocab_size))
    if dataset is not None:
        _known_dataset(dataset)
        data.source, data.paths, data.dataset = "dataset", [], dataset
        data.shards = shards or 0
    elif source is not None:
        data.source, data.paths = source, [str(Path(p).expanduser().resolve()) for p in paths]
    elif shards is not None:
        if data.source != "dataset":
            raise WorkspaceError("--shards needs a named dataset (--dataset NAME)")
        data.shards = shards
    if column is not None:
        data.column = column
    if val_percent is not None:
        data.val_percent = val_percent
    if tokenizer_kind is not None:
        data.tokenizer = tokenizer_kind
    if vocab_size is not None:
        data.vocab_size = vocab_size
    try:
        configmod.validate(config)
    except configmod.ConfigError as exc:  # the same check as a hand edit, worded for options
        raise WorkspaceError(str(exc).replace("[data] shards", "--shards")) from None
    built, cached, tokens = build_data(data, echo)
    meta = built.meta
    val_tokens = meta.get("tokenizers", {}).get(tokens.name, {}).get("val_tokens",
                                                                      meta["val_bytes"])
    if val_tokens < data.eval_seq + 1:
        raise WorkspaceError(f"validation split has only {val_tokens} tokens; it needs "
                             f"more than eval_seq ({data.eval_seq}): add text or raise "
                             f"val_percent")
    if data.key != built.key or changed:
        data.key = built.key
        configmod.save(ws.root, config)  # rewritten only on change: hand edits stay as they are
    scored = min(data.eval_tokens, meta["val_bytes"] - 1)
    echo(f"data: {meta['source']} corpus {built.key} ({'cached' if cached else 'built'}) "
         f"at {built.root}")
    echo(f"  files: {meta['files']:,} ({meta['train_files']:,} train, {meta['val_files']:,} "
         f"validation), bytes: {meta['bytes']:,}")
    echo(f"  train: {meta['train_bytes']:,} bytes, validation: {meta['val_bytes']:,} bytes "
         f"({scored:,} scored per experiment)")
    echo(f"  split: {corpus.describe(meta)}")
    if tokens.bpe:
        counts = meta["tokenizers"][tokens.name]
        echo(f"  tokenizer: BPE, {tokens.vocab_size:,} tokens ({tokens.tokenizer_path}), train: "
             f"{counts['train_tokens']:,} tokens, validation: {counts['val_tokens']:,} tokens "
             f"({meta['val_bytes'] / max(1, counts['val_tokens']):.2f} bytes per token)")
    return built


def build_data(data: configmod.DataConfig, echo=print) -> tuple[corpus.Corpus, bool,
                                                                  tokenizer.Tokens]:
    """The corpus [data] describes (downloading a named dataset's shards), built or found in
    the cache, whether it was cached, and its tokens (BPE ones trained once per corpus)."""
    try:
        if data.source == "dataset":
            corpus.parquet_module()  # before any download: the shards are parquet
            train, val = datasets.fetch(data.dataset, data.shards or None,
                                        corpus.default_cache_dir(), echo=echo)
            try:
                built, cached = corpus.build_from_shards(
                    data.dataset, train, val, column=datasets.get(data.dataset).column)
            except corpus.ShardError as exc:  # the hub's own bytes, but unreadable: fetch anew
                datasets.evict(exc.path)
                raise WorkspaceError(f"{exc}; removed it from the cache, run again") from None
        else:
            built, cached = corpus.build(data.source, [Path(p) for p in data.paths],
                                         column=data.column, val_percent=data.val_percent)
        return built, cached, _prepare_tokens(built, data, echo)
    except (corpus.CorpusError, datasets.DatasetError, tokenizer.TokenizerError) as exc:
        raise WorkspaceError(str(exc)) from None


def _known_dataset(name: str) -> None:
    try:
        datasets.get(name)
    except datasets.DatasetError as exc:
        raise WorkspaceError(str(exc)) from None


def _prepare_tokens(built: corpus.Corpus, data: configmod.DataConfig, echo) -> tokenizer.Tokens:
    if data.tokenizer != "bpe":
        return tokenizer.Tokens(built.root)
    tokens, stats = tokenizer.prepare(built.root, data.vocab_size, echo=echo)
    if stats is not None:
        built.record(tokenizers={**built.meta.get("tokenizers", {}), tokens.name: stats})
    return tokens


def init(target: Path, device: str, budget: float | None = None,
         source: str = "stdlib", paths: list[str] | None = None, column: str = "text",
         dataset: str | None = None, shards: int | None = None, tokenizer_kind: str = "bytes",
         vocab_size: int | None = None, echo=print) -> Workspace:
    """Create a workspace in `target` (new or empty folder), commit it, and prepare its data.
    `device` is cpu or cuda: the command line resolves auto (`runner.devices.resolve`)."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"init needs device cpu or cuda, got {device!r}")
    target = target.expanduser().resolve()
    if (target / configmod.CONFIG_NAME).is_file():
        echo(f"{target} is already a Ratchet workspace; checking its data (change settings in "
             f"ratchet.toml, data with `ratchet prepare`)")
        ws = Workspace(target)
        prepare_data(ws, echo=echo)
        return ws
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkspaceError(f"{target} is not empty and not a Ratchet workspace; "
                             f"choose a new or empty folder")
    config = configmod.Config()
    config.experiment.device = device
    # the whole allowance, compilation included: on a GPU about five minutes of training
    # remain after torch.compile's first steps (docs/benchmarks.md)
    config.experiment.budget_seconds = budget or (360.0 if device == "cuda" else 20.0)
    config.experiment.eval_timeout_seconds = 300.0 if device == "cuda" else 60.0
    eval_profile = profiles.EVAL["cuda" if device == "cuda" else "cpu"]
    for name, value in eval_profile.items():
        setattr(config.data, name, value)
    config.data.source, config.data.column = source, column
    config.data.paths = [str(Path(p).expanduser().resolve()) for p in paths or []]
    if dataset is not None:
        _known_dataset(dataset)
        config.data.source, config.data.dataset = "dataset", dataset
        config.data.shards = shards or 0
    elif shards is not None:
        raise WorkspaceError("--shards needs a named dataset (--dataset NAME)")
    config.data.tokenizer = tokenizer_kind
    config.data.vocab_size = vocab_size or config.data.vocab_size
    try:
        configmod.validate(config)
    except configmod.ConfigError as exc:
        raise WorkspaceError(str(exc).replace("[data] shards", "--shards")) from None

    created = target  # the outermost folder this call creates, removed again on failure
    while not created.parent.exists():
        created = created.parent
    created = created if not created.exists() else None
    target.mkdir(parents=True, exist_ok=True)
    train = template_text(TRAIN)
    train = with_constants(train, profiles.train_constants(device, tokenizer_kind))
    (target / TRAIN).write_text(train)
    (target / HARNESS).write_text(template_text(HARNESS))
    (target / PROGRAM).write_text(template_text(PROGRAM))
    (target / ".gitignore").write_text("\n".join(IGNORED) + "\n")
    configmod.save(target, config)
    ws = Workspace(target)
    try:
        prepare_data(ws, echo=echo)
    except WorkspaceError:  # leave the folder as it was found
        if created:
            shutil.rmtree(created)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    repo = git.Repo.init(target, initial_branch="main")
    repo.index.add([TRAIN, HARNESS, PROGRAM, ".gitignore", configmod.CONFIG_NAME])
    repo.index.commit("ratchet init: baseline workspace", author=AUTHOR, committer=AUTHOR)
    echo(f"workspace ready at {target} ({device}, {config.experiment.budget_seconds:g} s budget)")
    return ws
