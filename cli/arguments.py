"""Argument types and shared argument groups of the `ratchet` command line."""

from __future__ import annotations

import argparse
import math


class UserError(Exception):
    """A one-line error for the user."""


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    if not math.isfinite(value):  # no deadline at all would let a run train forever
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text}")
    return value


def _whole(text: str, what: str, low: int, high: int | None, bounds: str) -> int:
    """A whole number from `low` to `high` (None: no top), or one line saying what was wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{bounds}, got {text}")
    return value


def count(text: str) -> int:
    return _whole(text, "a whole number", 0, None, "must not be negative")


def port(text: str) -> int:
    return _whole(text, "a port number", 1, 65535, "ports are 1 to 65535")


def devices(text: str) -> list[int]:
    """--gpus 0,1,2 as device numbers."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected device numbers such as 0,1,2, got {text!r}")
    if len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"a device is listed twice in {text!r}")
    return [int(p) for p in parts]


def budget_multiples(text: str) -> list[float]:
    """--budgets 1x,2x,4x: distinct multiples of a session's budget, smallest first."""
    found = []
    for part in (p.strip().lower().removesuffix("x") for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected multiples such as 1x,2x,4x, got "
                                             f"{text!r}") from None
        if not 0 < value <= 1000:
            raise argparse.ArgumentTypeError(f"a multiple is above 0x and at most 1000x, "
                                             f"got {part}x")
        found.append(value)
    if len(set(found)) != len(found):
        raise argparse.ArgumentTypeError(f"a multiple is listed twice in {text!r}")
    return sorted(found)


def seed_count(text: str) -> int:
    return _whole(text, "a number of seeds", 2, None,
                  "at least 2 seeds (one pair has no standard error)")


def shard_count(text: str) -> int:
    return _whole(text, "a number of shards", 1, None, "must be at least 1")


def vocab(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got {text!r}") from None


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dataset", metavar="NAME", help="download a public corpus by name "
                       "(climbmix, tinystories) from the Hugging Face hub")
    group.add_argument("--text", nargs="+", metavar="PATH",
                       help="train on these text files or folders instead of the stdlib corpus")
    group.add_argument("--parquet", nargs="+", metavar="PATH",
                       help="train on the text column of these parquet files")
    parser.add_argument("--column", default=None, help="parquet text column (default: text)")
    parser.add_argument("--shards", type=shard_count, metavar="N",
                        help="training shards of --dataset to download (default: its own)")
    parser.add_argument("--tokenizer", choices=("bytes", "bpe"),
                        help="byte tokens, or a BPE tokenizer trained on the training split")
    parser.add_argument("--vocab-size", type=vocab, metavar="N",
                        help="tokens of the BPE tokenizer (default: 8192)")


def data_source(args) -> tuple[str | None, list[str] | None]:
    if args.text:
        return "text", args.text
    if args.parquet:
        return "parquet", args.parquet
    return None, None


def tag(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"tags use letters, digits, '-', '_' and '.', "
                                         f"got {text!r}")
    return text
