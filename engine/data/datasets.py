"""Public pretraining corpora by name: their parquet shards, downloaded from the Hugging Face hub
with `huggingface_hub` into a cache every workspace shares, and checked before use.

Each dataset names its training shards and its own validation shards (the split its authors, or
autoresearch, hold out), so no document of the validation split is ever trained on. Downloads
land in `<ratchet cache>/data/hub/` (huggingface_hub's cache layout): inside the folder the
trainer's sandbox hides, so train.py reads neither the raw shards nor the validation text.
huggingface_hub resumes a partial download; a file already in the cache is not fetched again,
and one whose bytes do not hash to what the hub says is removed and reported.
`HF_ENDPOINT` points the client at a mirror (or, in tests, at a local server).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class DatasetError(Exception):
    """A dataset that cannot be fetched or used; the message is one line for the user."""


@dataclass(frozen=True)
class Dataset:
    name: str
    repo: str  # a dataset repository on the hub
    train: tuple[str, ...]  # training shards in order: --shards N takes the first N
    val: tuple[str, ...]  # the validation shards, always fetched
    column: str = "text"
    default_shards: int = 1
    about: str = ""

    def train_files(self, shards: int | None) -> tuple[str, ...]:
        count = self.default_shards if shards is None else shards
        if not 1 <= count <= len(self.train):
            raise DatasetError(f"--shards for {self.name} must be from 1 to {len(self.train):,}, "
                               f"got {count}")
        return self.train[:count]


# autoresearch's corpus: shard_06542 is its pinned validation shard, the others train.
_CLIMBMIX_SHARDS = 6542
_TINYSTORIES = "data/{}-{:05d}-of-{:05d}-{}.parquet"
DATASETS = {d.name: d for d in (
    Dataset("climbmix", "karpathy/climbmix-400b-shuffle",
            tuple(f"shard_{i:05d}.parquet" for i in range(_CLIMBMIX_SHARDS)),
            (f"shard_{_CLIMBMIX_SHARDS:05d}.parquet",), default_shards=10,
            about="web text as autoresearch trains on it (ClimbMix 400B, shuffled)"),
    Dataset("tinystories", "roneneldan/TinyStories",
            tuple(_TINYSTORIES.format("train", i, 4, h) for i, h in enumerate(
                ("2d5a1467fff1081b", "5852b56a2bd28fd9", "a26307300439e943", "d243063613e5a057"))),
            (_TINYSTORIES.format("validation", 0, 1, "869c898b519ad725"),), default_shards=1,
            about="short synthetic children's stories, about 2 GB of text in 4 shards"),
)}
NAMES = tuple(DATASETS)


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(NAMES)})")
    return DATASETS[name]


def hub_cache(cache_dir: Path) -> Path:
    return cache_dir / "data" / "hub"


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _download(dataset: Dataset, filename: str, cache: Path) -> Path:
    try:
        import huggingface_hub as hub
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:
        raise DatasetError("named datasets need huggingface_hub: pip install huggingface_hub") \
            from exc
    cached = hub.try_to_load_from_cache(dataset.repo, filename, cache_dir=str(cache),
                                        repo_type="dataset")
    if isinstance(cached, str):  # complete in the cache: no network needed (it is verified)
        return Path(cached)
    try:
        # one quick request first: hf_hub_download retries a refused connection for ~20 s
        hub.get_hf_file_metadata(hub.hf_hub_url(dataset.repo, filename, repo_type="dataset",
                                                endpoint=_endpoint()), timeout=10)
    except Exception as exc:
        if not _unreachable(exc):
            raise DatasetError(f"cannot download {dataset.name} ({filename}) from "
                               f"{_endpoint()}: {_one_line(exc)}") from None
        raise DatasetError(f"cannot download {dataset.name} ({filename}): no connection to "
                           f"{_endpoint()} (offline?), and no copy in {cache}") from None
    try:
        return Path(hub.hf_hub_download(dataset.repo, filename, repo_type="dataset",
                                        cache_dir=str(cache), endpoint=_endpoint()))
    except LocalEntryNotFoundError:
        raise DatasetError(f"cannot download {dataset.name} ({filename}) from {_endpoint()}: "
                           f"no connection to the hub and no copy in {cache}") from None
    except RepositoryNotFoundError:
        raise DatasetError(f"{_endpoint()} has no dataset {dataset.repo}") from None
    except EntryNotFoundError:
        raise DatasetError(f"dataset {dataset.repo} on {_endpoint()} has no {filename}") from None
    except Exception as exc:  # the client's own message, which names the cause
        raise DatasetError(f"downloading {dataset.name} ({filename}) failed: "
                           f"{_one_line(exc)}") from None


def _unreachable(exc: BaseException) -> bool:
    """A connection that could not be made or timed out (the client's httpx, or the OS's)."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "ReadTimeout",
                         "ConnectionError", "OfflineModeIsEnabled", "gaierror"})


def evict(path: Path) -> None:
    """Remove a cached shard (its blob and the snapshot's link to it), so the next fetch
    downloads it again."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _verify(dataset: Dataset, filename: str, path: Path) -> str:
    """The file's sha256, checked against the hub's: a large (LFS) file is cached under its
    sha256 (its blob's name), so what was written must hash to that name."""
    blob = path.resolve()
    digest = _sha256(blob)
    if re.fullmatch(r"[0-9a-f]{64}", blob.name) and blob.name != digest:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise DatasetError(f"{dataset.name} shard {filename} is corrupt (sha256 {digest[:12]}... "
                           f"is not the hub's {blob.name[:12]}...); removed it, run again")
    return digest


Shards = list[tuple[Path, str]]  # (path, sha256) of each shard


def fetch(name: str, shards: int | None, cache_dir: Path,
          echo: Callable[[str], None] = print) -> tuple[Shards, Shards]:
    """Download (or find in the cache) the dataset's first `shards` training shards and its
    validation shards; returns (train, val) as (path, sha256) pairs."""
    dataset = get(name)
    train_names, cache = dataset.train_files(shards), hub_cache(cache_dir)
    wanted = [*train_names, *dataset.val]
    echo(f"dataset: {name} ({dataset.repo}), {len(train_names)} training + {len(dataset.val)} "
         f"validation shards, cache {cache}")
    found = []
    for i, filename in enumerate(wanted, 1):
        echo(f"  shard {i}/{len(wanted)}: {filename}")
        path = _download(dataset, filename, cache)
        found.append((path, _verify(dataset, filename, path)))
    return found[: len(train_names)], found[len(train_names):]
