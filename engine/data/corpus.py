"""Build the byte corpus a workspace trains and evaluates on, cached by content hash.

Sources, in a deterministic order:
* `stdlib`: the Python standard library's own .py sources (on every machine, no download);
* text files, or folders of them;
* parquet files with a text column (autoresearch's shards).

Splits (no document is in both; each is stable when documents are added):
* `stdlib` ("held-out-packages"): validation is every .py file of a fixed list of packages a
  training process never imports (HELD_OUT_PACKAGES: idlelib, tkinter, lib2to3, pydoc_data, ...;
  those this Python has), training is the rest of the standard library. The trainer's sandbox
  hides those packages in every copy of the standard library it shows, so train.py cannot read
  the validation text anywhere, not only in the corpus cache.
* `text` and `parquet` ("name-hash"): documents (a file, or a parquet row) go to validation by a
  hash of their name (`val_percent` of them). Their files live where the user put them, outside
  the trainer's view unless that is inside a folder it sees.
* a named dataset ("dataset-split", `build_from_shards`): the dataset's own validation shards are
  validation, its training shards training; the shards are in the cache the trainer cannot see.
Corpora built before version 2 split the stdlib by name hash too: their validation files are
readable by train.py, and `describe` says so. Tokens are bytes. The splits are written to separate
folders so a sandbox can hide one.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import random
import shutil
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 2  # 2: the stdlib is split by held-out packages
# The stdlib packages whose sources are the default validation split: torch, numpy and the
# train.py template never import them, so the trainer's sandbox can hide them everywhere.
HELD_OUT_PACKAGES = ("curses", "dbm", "ensurepip", "idlelib", "lib2to3", "msilib", "pydoc_data",
                     "tkinter", "turtledemo", "venv", "wsgiref", "xmlrpc")
MIN_HELD_OUT_BYTES = 262_145  # the CPU profile's eval_tokens (262,144) plus the next byte
SEPARATOR = b"\x00"  # between documents; never appears in text sources
TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".json", ".csv", ".tex", ".html", ".c", ".h",
                 ".js", ".ts", ".rs", ".go", ".java", ".toml", ".yaml", ".yml", ".sh"}


class CorpusError(Exception):
    """A data source that cannot be used; the message is one line for the user."""


class ShardError(CorpusError):
    """A downloaded shard that cannot be read (truncated, not parquet): `path` names it."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Corpus:
    key: str
    root: Path

    @property
    def train_path(self) -> Path:
        return self.root / "train" / "train.bin"

    @property
    def val_path(self) -> Path:
        return self.root / "val" / "val.bin"

    @property
    def meta(self) -> dict:
        return json.loads((self.root / "meta.json").read_text())

    def record(self, **fields) -> None:
        """Add fields (e.g. the probe's verdict) to meta.json, replacing it atomically."""
        meta = {**self.meta, **fields}
        staging = self.root / f"meta.json.tmp{os.getpid()}"
        staging.write_text(json.dumps(meta, indent=2))
        staging.replace(self.root / "meta.json")

    def samples(self, count: int = 64, size: int = 64) -> list[bytes]:
        """`count` pieces of validation text of `size` bytes that are not in the training split,
        each the start of a line (printable text, not mostly one character), chosen at random
        but the same for the same corpus: what a search for copies of the validation text
        looks for."""
        # mapped, not read: a downloaded dataset's training split can exceed memory
        with open(self.train_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
                as train:
            return self._samples(train, count, size)

    def _samples(self, train: mmap.mmap, count: int, size: int) -> list[bytes]:
        lines = sorted({line[:size] for line in self.val_path.read_bytes().split(b"\n")
                        if len(line) >= size})
        random.Random(self.key).shuffle(lines)
        chosen: list[bytes] = []
        for piece in lines:
            if len(chosen) == count:
                break
            try:
                printable = piece.decode().isprintable()
            except UnicodeDecodeError:  # cut inside a character
                continue
            if printable and len(set(piece)) >= 16 and train.find(piece) < 0:
                chosen.append(piece)
        return chosen


def describe(meta: dict) -> str:
    """Which split a corpus uses and whether train.py can read its validation text."""
    split = meta.get("split", "name-hash")
    if split == "dataset-split":
        text = (f"{meta['source']}, validation = its own validation shards "
                f"({', '.join(meta['shards']['val'])}; hidden from train.py)")
    elif split == "held-out-packages":
        names = ", ".join(meta.get("held_out", []))
        text = f"{meta['source']}, validation = held-out packages {names} (hidden from train.py)"
    elif meta.get("source") == "stdlib":
        text = ("stdlib, name-hash split (validation readable by train.py; run "
                "`ratchet prepare --stdlib` to switch)")
    else:
        text = (f"{meta.get('source')}, name-hash split ({meta.get('val_percent', 5.0):g}% of "
                f"documents in validation)")
    if meta.get("val_hidden") is True:
        text += "; probe: no validation text readable by train.py"
    elif meta.get("val_hidden") is False:
        text += "; probe: validation text READABLE by train.py"
    return text


def default_cache_dir() -> Path:
    override = os.environ.get("RATCHET_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ratchet"


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def held_out_here() -> list[str]:
    """The held-out packages this Python's standard library has."""
    root = _stdlib_root()
    return [name for name in HELD_OUT_PACKAGES
            if (root / name).is_dir() and any((root / name).rglob("*.py"))]


def _stdlib_files() -> list[tuple[str, Path]]:
    root = _stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")) or not path.is_file():
            continue
        files.append((f"stdlib/{rel}", path))
    if not files:
        raise CorpusError(f"no Python sources found under {root}")
    return sorted(files)


def _text_files(paths: list[Path]) -> list[tuple[str, Path]]:
    files = []
    for given in paths:
        if given.is_file():
            files.append((given.name, given))
        elif given.is_dir():
            for path in given.rglob("*"):
                if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
                    files.append((path.relative_to(given).as_posix(), path))
        else:
            raise CorpusError(f"text source {given} does not exist")
    if not files:
        raise CorpusError(f"no text files ({', '.join(sorted(TEXT_SUFFIXES))}) under "
                          f"{', '.join(map(str, paths))}")
    return sorted(files)


def parquet_module():
    """pyarrow.parquet, or a one-line error naming the extra that installs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CorpusError("parquet sources need pyarrow: pip install 'ratchet[parquet]'") from exc
    return pq


def _parquet_documents(paths: list[Path], column: str) -> Iterator[tuple[str, bytes]]:
    pq = parquet_module()
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.rglob("*.parquet"))
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"parquet source {path} does not exist")
    if not files:
        raise CorpusError(f"no .parquet files under {', '.join(map(str, paths))}")
    for path in files:
        try:
            table = pq.read_table(path, columns=[column])
        except Exception as exc:
            raise CorpusError(f"cannot read column {column!r} from {path}: {exc}") from exc
        for row, text in enumerate(table.column(column).to_pylist()):
            if text is None:
                continue
            if not isinstance(text, str):
                raise CorpusError(f"column {column!r} of {path} holds {type(text).__name__} "
                                  f"values, not text")
            if text:
                yield f"{path.name}#{row}", text.encode("utf-8")


def _documents(source: str, paths: list[Path], column: str) -> Iterator[tuple[str, bytes]]:
    if source == "stdlib":
        for name, path in _stdlib_files():
            yield name, path.read_bytes().replace(SEPARATOR, b"")
    elif source == "text":
        for name, path in _text_files(paths):
            yield name, path.read_bytes().replace(SEPARATOR, b"")
    elif source == "parquet":
        yield from _parquet_documents(sorted(paths), column)
    else:
        raise CorpusError(f"unknown data source {source!r} (use stdlib, text or parquet)")


def _is_validation(name: str, val_percent: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 10000
    return bucket < val_percent * 100


def _in_held_out(name: str, held_out: list[str]) -> bool:
    parts = name.split("/")  # stdlib/<package>/...
    return len(parts) > 2 and parts[1] in held_out


def build(source: str = "stdlib", paths: list[Path] | None = None, *, column: str = "text",
          val_percent: float = 5.0, cache_dir: Path | None = None) -> tuple[Corpus, bool]:
    """Build (or find in the cache) the corpus; returns it and whether it was already cached."""
    paths = [Path(p).expanduser().resolve() for p in (paths or [])]
    if source != "stdlib" and not paths:
        raise CorpusError(f"data source {source!r} needs at least one path")
    if not 0 < val_percent < 100:
        raise CorpusError(f"val_percent must be between 0 and 100, got {val_percent}")
    docs = list(_documents(source, paths, column))
    held_out = held_out_here() if source == "stdlib" else []
    split_kind = (f"held-out-packages {','.join(held_out)}" if source == "stdlib"
                  else f"name-hash {float(val_percent)}")
    digest = hashlib.sha256(f"v{FORMAT_VERSION} {split_kind}".encode())
    for name, data in docs:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    key = digest.hexdigest()[:16]
    corpus = Corpus(key, (cache_dir or default_cache_dir()) / "data" / key)
    if (corpus.root / "meta.json").is_file():
        return corpus, True

    if source == "stdlib":
        val = [d for d in docs if _in_held_out(d[0], held_out)]
        train = [d for d in docs if not _in_held_out(d[0], held_out)]
        held = sum(len(d) for _, d in val) + max(len(val) - 1, 0)
        if held < MIN_HELD_OUT_BYTES:
            names = ", ".join(held_out) or "none of them"
            raise CorpusError(f"this Python's held-out stdlib packages ({names}) hold {held:,} "
                              f"bytes, fewer than the {MIN_HELD_OUT_BYTES:,} validation needs; "
                              f"use --text or --parquet data")
    else:
        train = [d for d in docs if not _is_validation(d[0], val_percent)]
        val = [d for d in docs if _is_validation(d[0], val_percent)]
    if not val:  # tiny sources: hold out the last document so evaluation has something
        val = [train.pop()]
    if not train:
        raise CorpusError("the data source has a single document; it needs at least two"
                          if len(docs) == 1 else
                          f"all {len(docs)} documents fell into validation; lower val_percent")
    staging = corpus.root.with_name(corpus.root.name + f".tmp{os.getpid()}")
    for split, split_docs in (("train", train), ("val", val)):
        (staging / split).mkdir(parents=True, exist_ok=True)
        with open(staging / split / f"{split}.bin", "wb") as f:
            f.write(SEPARATOR.join(data for _, data in split_docs))
    meta = {
        "key": key,
        "source": source,
        "paths": [str(p) for p in paths],
        "files": len(docs),
        "bytes": sum(len(d) for _, d in docs),
        "train_files": len(train),
        "val_files": len(val),
        "train_bytes": (staging / "train" / "train.bin").stat().st_size,
        "val_bytes": (staging / "val" / "val.bin").stat().st_size,
    }
    if source == "stdlib":
        meta.update(split="held-out-packages", held_out=held_out)
    else:
        meta.update(split="name-hash", val_percent=val_percent)
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        staging.rename(corpus.root)  # atomic: a half-written corpus is never found in the cache
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (corpus.root / "meta.json").is_file():
            raise
    return corpus, False


def _shard_texts(path: Path, column: str) -> Iterator[bytes]:
    """The documents of one parquet shard, a row group at a time (shards can be large)."""
    pq = parquet_module()
    try:
        reader = pq.ParquetFile(path)
        for batch in reader.iter_batches(columns=[column], batch_size=8192):
            for text in batch.column(0).to_pylist():
                if text is not None and not isinstance(text, str):
                    raise CorpusError(f"column {column!r} of {path.name} holds "
                                      f"{type(text).__name__} values, not text")
                if text:
                    yield text.encode("utf-8").replace(SEPARATOR, b"")
    except CorpusError:
        raise
    except Exception as exc:  # a truncated or damaged shard
        raise ShardError(f"cannot read column {column!r} of shard {path.name}: "
                         f"{' '.join(str(exc).split())[:200]}", path) from None


def build_from_shards(name: str, train: list[tuple[Path, str]], val: list[tuple[Path, str]], *,
                      column: str = "text", cache_dir: Path | None = None) -> tuple[Corpus, bool]:
    """The corpus of a named dataset's shards, given as (path, sha256): the validation shards
    are the validation split. Shards are read one at a time, so the corpus may exceed memory;
    the key is the hash of the shards' hashes."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION} dataset-split {name} {column}".encode())
    for split, shards in (("train", train), ("val", val)):
        for path, sha in shards:
            digest.update(f"{split} {path.name} {sha}".encode())
    key = digest.hexdigest()[:16]
    corpus = Corpus(key, (cache_dir or default_cache_dir()) / "data" / key)
    if (corpus.root / "meta.json").is_file():
        return corpus, True
    staging = corpus.root.with_name(corpus.root.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    counts = {}
    try:
        for split, shards in (("train", train), ("val", val)):
            (staging / split).mkdir(parents=True)
            docs = 0
            with open(staging / split / f"{split}.bin", "wb") as f:
                for path, _ in shards:
                    for text in _shard_texts(path, column):
                        f.write(SEPARATOR + text if docs else text)
                        docs += 1
            if not docs:
                raise CorpusError(f"the {split} shards of {name} hold no text in column "
                                  f"{column!r}")
            counts[split] = docs
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    train_bytes = (staging / "train" / "train.bin").stat().st_size
    val_bytes = (staging / "val" / "val.bin").stat().st_size
    meta = {"key": key, "source": f"dataset {name}", "dataset": name,
            "shards": {"train": [p.name for p, _ in train], "val": [p.name for p, _ in val]},
            "files": counts["train"] + counts["val"], "bytes": train_bytes + val_bytes,
            "train_files": counts["train"], "val_files": counts["val"],
            "train_bytes": train_bytes, "val_bytes": val_bytes, "split": "dataset-split"}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        staging.rename(corpus.root)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (corpus.root / "meta.json").is_file():
            raise
    return corpus, False
