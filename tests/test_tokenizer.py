"""The BPE tokenizer: lossless on the corpus's own splits, cached with the corpus, and scored in
bits per byte of the same validation text as byte tokens (the definition: total nats over the
tokens / (ln 2 x bytes of the text they spell))."""

from __future__ import annotations

import ast
import math
import random

import numpy as np
import pytest
import torch

from ratchet.engine.data import corpus, tokenizer
from ratchet.engine.workspace import layout
from ratchet.model import prepare

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "far", "away", "because", "it",
         "was", "very", "happy", "today", "with", "friends,", "naïve", "café", "—", "déjà", "vu"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    source = root / "text"
    source.mkdir()
    rng = random.Random(0)
    for i in range(80):
        (source / f"doc{i:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(200)))
    (source / "latin1.txt").write_bytes(b"caf\xe9 na\xefve \xff\xfe " * 40)  # not UTF-8
    found, _ = corpus.build("text", [source], val_percent=25.0, cache_dir=root / "cache")
    return found


def test_bpe_tokens_spell_exactly_the_text_of_both_splits(built):
    tokens, stats = tokenizer.prepare(built.root, 320, echo=lambda _: None)
    table = tokens.token_bytes()
    assert len(table) == 320 and stats["vocab_size"] == 320
    for ids_path, text_path in ((tokens.train_path, built.train_path),
                                (tokens.val_path, built.val_path)):
        ids = np.fromfile(ids_path, dtype="<u2")
        assert b"".join(table[i] for i in ids) == text_path.read_bytes()
    assert stats["train_tokens"] < built.meta["train_bytes"] / 2  # it does compress
    # the harness's own count of bytes per token agrees with the tokenizer's
    lengths = prepare.token_lengths(str(tokens.tokenizer_path))
    assert lengths.tolist() == [len(t) for t in table]
    # once per corpus: the second call finds it in the cache
    assert tokenizer.prepare(built.root, 320, echo=lambda _: None)[1] is None


def test_a_vocabulary_the_corpus_cannot_fill_is_one_line(built):
    with pytest.raises(tokenizer.TokenizerError, match="lower it"):
        tokenizer.prepare(built.root, 60_000, echo=lambda _: None)
    assert not tokenizer.Tokens(built.root, 60_000).ready
    with pytest.raises(tokenizer.TokenizerError, match="from 257"):
        tokenizer.prepare(built.root, 100, echo=lambda _: None)


class Unigram(torch.nn.Module):
    """Logits from the current token alone: causal, and cheap to compute by hand."""

    def __init__(self, vocab: int, uniform: bool):
        super().__init__()
        torch.manual_seed(vocab)
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab) if uniform
                                        else torch.randn(vocab, vocab))

    def forward(self, idx):
        return torch.nn.functional.embedding(idx, self.table)


def _scored(tokens: tokenizer.Tokens, model: Unigram, eval_bytes: int, shape, tmp_path):
    """val_bpb through the harness, and by the definition on the same windows."""
    batch, seq = shape
    tmp_path.mkdir()
    (tmp_path / "val.bin").write_bytes(tokens.validation_slice(eval_bytes))
    with torch.no_grad():
        program = torch.export.export(model, (torch.zeros(batch, seq, dtype=torch.long),))
    torch.export.save(program, tmp_path / "model.pt2")
    result = prepare.evaluate_bpb(str(tmp_path / "model.pt2"), str(tmp_path / "val.bin"),
                                  eval_bytes, "cpu", shape,
                                  str(tokens.tokenizer_path) if tokens.bpe else None)
    dtype = "<u2" if tokens.bpe else np.uint8
    ids = np.fromfile(tmp_path / "val.bin", dtype=dtype).astype(np.int64)
    table = tokens.token_bytes()
    windows = (len(ids) - 1) // seq
    x, y = torch.from_numpy(ids[: windows * seq]), torch.from_numpy(ids[1 : windows * seq + 1])
    logp = torch.log_softmax(model.table.detach().double()[x], dim=-1)
    nats = -logp.gather(-1, y.unsqueeze(-1)).sum().item()
    text = b"".join(table[i] for i in y.tolist())  # the text the scored tokens spell
    start = len(table[int(ids[0])])
    assert text == tokens.val_path.parent.joinpath("val.bin").read_bytes()[start:start + len(text)]
    assert result["eval_bytes"] == len(text) and result["eval_tokens"] == windows * seq
    return result["val_bpb"], nats / (math.log(2) * len(text)), len(text), windows * seq


@pytest.mark.parametrize("uniform", [True, False])
def test_val_bpb_of_either_tokenization_is_nats_over_the_bytes_of_the_same_text(
        built, tmp_path, uniform):
    bpe, _ = tokenizer.prepare(built.root, 320, echo=lambda _: None)
    eval_bytes, shape = 6000, (4, 32)
    byte_side = _scored(tokenizer.Tokens(built.root), Unigram(256, uniform), eval_bytes, shape,
                        tmp_path / "bytes")
    bpe_side = _scored(bpe, Unigram(320, uniform), eval_bytes, shape, tmp_path / "bpe")
    for harness, by_hand, scored_bytes, _ in (byte_side, bpe_side):
        assert harness == pytest.approx(by_hand, rel=1e-9)
        assert eval_bytes - 4 * 32 * 4 <= scored_bytes <= eval_bytes  # the same stretch of text
    if uniform:  # log2(V) bits per token, spread over the bytes those tokens spell
        assert byte_side[0] == pytest.approx(8.0)
        assert bpe_side[0] == pytest.approx(bpe_side[3] * math.log2(320) / bpe_side[2])
        assert bpe_side[0] < byte_side[0]


def test_a_cuda_bpe_workspace_gets_the_documented_gpu_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("RATCHET_PROBE_SECONDS", "0")
    source = tmp_path / "text"
    source.mkdir()
    rng = random.Random(1)
    for i in range(200):  # enough validation text for one 2,048-token window
        (source / f"{i}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(400)))
    ws = layout.init(tmp_path / "ws", device="cuda", paths=[str(source)], source="text",
                     tokenizer_kind="bpe", vocab_size=300, echo=lambda *_: None)
    values = {}
    for node in ast.parse((ws.root / "train.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            values[node.targets[0].id] = node.value.value
    assert values["SEQ_LEN"] == 2048
    assert values["BATCH_SIZE"] * values["GRAD_ACCUM"] * values["SEQ_LEN"] == 2**19
    assert (values["LEARNING_RATE"], values["WARMUP_FRAC"], values["MIN_LR_FRAC"]) == \
        (0.0018, 0.04, 0.1)
    config = ws.config()
    assert (config.data.tokenizer, config.data.vocab_size, config.data.eval_seq) == \
        ("bpe", 300, 2048)
    assert ws.tokens(config).vocab_size == 300
