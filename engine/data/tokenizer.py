"""The tokens a workspace trains and is scored on: a prepared corpus as bytes, or through a BPE
tokenizer trained once on that corpus's training split.

A BPE tokenizer (Hugging Face `tokenizers`, byte-level: every byte is one character of its
alphabet, so any text encodes losslessly) is trained at prepare time and cached with the corpus:

    <corpus>/train/bpe-<V>/tokenizer.json   the tokenizer (training text only went into it)
    <corpus>/train/bpe-<V>/train.bin        the training split as uint16 token ids
    <corpus>/val/bpe-<V>.bin                the validation split as uint16 token ids

Documents are encoded one by one and joined by the token of the separator byte, so the
validation tokens decode to exactly the bytes of `val/val.bin`: val_bpb is bits per byte of the
same text whichever tokenizer a workspace uses. The trainer's sandbox shows `train/` only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEPARATOR = b"\x00"  # between documents, as corpus.py writes the splits
KINDS = ("bytes", "bpe")
MIN_VOCAB, MAX_VOCAB = 257, 65_536  # above the 256 byte tokens; ids must fit in uint16
TRAIN_TEXT_BYTES = 2_000_000_000  # the tokenizer learns from at most this much training text
MAX_TOKEN_BYTES = 64  # no merge grows past this: long runs of one character stay split
_BLOCK = 64 << 20  # corpus bytes read at a time
_BATCH = 4096  # documents per encode_batch call


def _bytes_to_chars() -> dict[int, str]:
    """GPT-2's byte-level alphabet (what `tokenizers`' ByteLevel uses): printable bytes stand
    for themselves, the rest are shifted above U+0100, so each byte is exactly one character."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, shift = {}, 0
    for byte in range(256):
        if byte in kept:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + shift)
            shift += 1
    return chars


BYTE_CHARS = _bytes_to_chars()
CHAR_BYTES = {char: byte for byte, char in BYTE_CHARS.items()}


class TokenizerError(Exception):
    """A tokenizer that cannot be built as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Tokens:
    """A prepared corpus (its folder) seen through one tokenizer: `vocab_size` 256 is bytes,
    anything else BPE."""

    root: Path
    vocab_size: int = 256

    @property
    def bpe(self) -> bool:
        return self.vocab_size != 256

    @property
    def name(self) -> str:
        return f"bpe-{self.vocab_size}" if self.bpe else "bytes"

    @property
    def train_path(self) -> Path:
        return self.root / "train" / (f"{self.name}/train.bin" if self.bpe else "train.bin")

    @property
    def val_path(self) -> Path:
        return self.root / "val" / (f"{self.name}.bin" if self.bpe else "val.bin")

    @property
    def tokenizer_path(self) -> Path | None:
        return self.root / "train" / self.name / "tokenizer.json" if self.bpe else None

    @property
    def ready(self) -> bool:
        return not self.bpe or (self.val_path.is_file() and self.train_path.is_file())

    def token_bytes(self) -> list[bytes]:
        """The text of each token id, as bytes."""
        if not self.bpe:
            return [bytes([i]) for i in range(256)]
        return token_bytes(self.tokenizer_path)

    def validation_slice(self, eval_bytes: int) -> bytes:
        """The start of the validation split as the evaluator reads it: the tokens of its first
        `eval_bytes` bytes of text, plus the one after (the last target). Bytes: one byte per
        token; BPE: little-endian uint16 ids."""
        if not self.bpe:
            with open(self.val_path, "rb") as f:
                return f.read(eval_bytes + 1)
        # every token holds at least one byte, so eval_bytes + 1 tokens always cover the text
        ids = np.fromfile(self.val_path, dtype="<u2", count=eval_bytes + 1)
        lengths = np.array([len(t) for t in self.token_bytes()], dtype=np.int64)
        covered = int(np.searchsorted(np.cumsum(lengths[ids]), eval_bytes, side="right"))
        return ids[: max(covered, 1) + 1].tobytes()


def token_bytes(path: Path) -> list[bytes]:
    """The bytes each id of a byte-level tokenizer.json stands for."""
    vocab = json.loads(Path(path).read_text())["model"]["vocab"]
    table = [b""] * len(vocab)
    for token, index in vocab.items():
        table[index] = bytes(CHAR_BYTES[c] for c in token)
    return table


def _tokenizer_library():
    try:
        import tokenizers
    except ImportError as exc:
        raise TokenizerError("the BPE tokenizer needs the tokenizers package: "
                          "pip install tokenizers") from exc
    return tokenizers


def train(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer of `vocab_size` ids learnt from `texts` (no special tokens:
    the document separator is byte 0's own token)."""
    tk = _tokenizer_library()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=[BYTE_CHARS[b] for b in range(256)],
                                     max_token_length=MAX_TOKEN_BYTES)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def encode(tokenizer, documents: list[bytes]) -> list[list[int]]:
    """Token ids of each document. Text that is not UTF-8 (rare: a stray Latin-1 file) is
    spelt out byte by byte with the byte tokens, so every document encodes losslessly."""
    byte_ids = [tokenizer.token_to_id(BYTE_CHARS[b]) for b in range(256)]
    texts, plain = [], []
    for doc in documents:
        try:
            texts.append(doc.decode("utf-8"))
            plain.append(True)
        except UnicodeDecodeError:
            texts.append("")
            plain.append(False)
    encoded = tokenizer.encode_batch_fast(texts) if hasattr(tokenizer, "encode_batch_fast") \
        else tokenizer.encode_batch(texts)
    return [enc.ids if ok else [byte_ids[b] for b in doc]
            for enc, ok, doc in zip(encoded, plain, documents, strict=True)]


def documents(path: Path) -> Iterator[bytes]:
    """The documents of a split file (joined by SEPARATOR), read a block at a time."""
    rest = b""
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            parts = (rest + block).split(SEPARATOR)
            rest = parts.pop()
            yield from parts
    yield rest


def _training_texts(path: Path, limit: int) -> Iterator[str]:
    seen = 0
    for doc in documents(path):
        if seen >= limit:
            return
        seen += len(doc)
        yield doc.decode("utf-8", errors="replace")


def _write_tokens(tokenizer, source: Path, target: Path) -> int:
    separator = tokenizer.token_to_id(BYTE_CHARS[SEPARATOR[0]])
    count, first, batch = 0, True, []
    with open(target, "wb") as out:
        def flush() -> None:
            nonlocal count, first
            for ids in encode(tokenizer, batch):
                row = ids if first else [separator, *ids]
                first = False
                np.asarray(row, dtype="<u2").tofile(out)
                count += len(row)
            batch.clear()

        for doc in documents(source):
            batch.append(doc)
            if len(batch) >= _BATCH:
                flush()
        flush()
    return count


def prepare(root: Path, vocab_size: int, echo=print) -> tuple[Tokens, dict | None]:
    """Train the BPE tokenizer of the corpus in `root` and encode both splits, once; returns
    the tokens and, when it built them, what it built (for the corpus's meta.json)."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise TokenizerError(f"vocab_size must be from {MIN_VOCAB} to {MAX_VOCAB:,} for BPE, "
                          f"got {vocab_size}")
    tokens = Tokens(root, vocab_size)
    if tokens.ready:
        return tokens, None
    _tokenizer_library()
    started = time.time()
    echo(f"tokenizer: training BPE ({vocab_size:,} tokens) on the training split ...")
    staging = root / f"{tokens.name}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        tokenizer = train(_training_texts(Tokens(root).train_path, TRAIN_TEXT_BYTES), vocab_size)
        if tokenizer.get_vocab_size() != vocab_size:  # a small corpus has fewer merges to learn
            raise TokenizerError(f"the training split only supports {tokenizer.get_vocab_size():,} "
                              f"BPE tokens, fewer than vocab_size {vocab_size:,}; lower it")
        tokenizer.save(str(staging / "tokenizer.json"))
        train_count = _write_tokens(tokenizer, Tokens(root).train_path, staging / "train.bin")
        val_count = _write_tokens(tokenizer, Tokens(root).val_path, staging / "val.bin")
        (staging / "val.bin").replace(tokens.val_path)  # hidden folder; valid only with train
        staging.rename(tokens.train_path.parent)  # last: its presence means complete
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return tokens, {"vocab_size": vocab_size, "train_tokens": train_count,
                    "val_tokens": val_count, "seconds": round(time.time() - started, 1)}
