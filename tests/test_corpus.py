"""The corpus builder: what gets read, how it is split, and when the cache is reused."""

from __future__ import annotations

import pytest

from ratchet.engine.data import corpus


def _doc(name: str, size: int = 800) -> str:
    """Distinct text for one document, with a marker line that names it."""
    body = f"# document {name}\n" + "".join(f"{name} line {i}: the quick brown fox\n"
                                             for i in range(size // 30 + 1))
    return body[:size] + f"\n<<END {name}>>\n"


def _text_tree(root, count: int = 12) -> dict[str, str]:
    """A folder of text files in nested folders, plus files that are not text; returns the text."""
    docs = {}
    for i in range(count):
        rel = ["a.txt", "notes/b.md", "notes/deep/c.py", "src/d.rs", "e.rst"][i % 5]
        rel = rel.replace(".", f"{i}.", 1)
        docs[rel] = _doc(f"doc{i}")
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "notes" / "picture.png").write_bytes(b"\x89PNG IGNORED-BINARY " * 50)
    (root / "data.bin").write_bytes(b"IGNORED-BINARY " * 50)
    return docs


def _documents(path) -> list[bytes]:
    data = path.read_bytes()
    return data.split(corpus.SEPARATOR) if data else []


def test_text_folder_builds_separate_splits_and_consistent_meta(tmp_path):
    """Train and validation live in different folders (so a sandbox can hide one), and meta.json
    counts what is actually in them; non-text files are left out."""
    docs = _text_tree(tmp_path / "src", count=12)
    built, cached = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "cache")

    assert not cached
    assert built.root == tmp_path / "cache" / "data" / built.key
    assert built.train_path.is_file() and built.val_path.is_file()
    assert built.train_path.parent != built.val_path.parent
    assert built.train_path.parent.parent == built.val_path.parent.parent == built.root

    meta = built.meta
    total = sum(len(t.encode()) for t in docs.values())
    assert meta["key"] == built.key
    assert meta["source"] == "text"
    assert meta["files"] == len(docs) == meta["train_files"] + meta["val_files"]
    assert meta["train_files"] >= 1 and meta["val_files"] >= 1
    assert meta["bytes"] == total
    assert meta["train_bytes"] == built.train_path.stat().st_size
    assert meta["val_bytes"] == built.val_path.stat().st_size
    # documents are joined by one separator byte within each split
    assert meta["train_bytes"] + meta["val_bytes"] == total + meta["files"] - 2
    assert len(_documents(built.train_path)) == meta["train_files"]
    assert len(_documents(built.val_path)) == meta["val_files"]

    everything = built.train_path.read_bytes() + built.val_path.read_bytes()
    assert b"IGNORED-BINARY" not in everything
    for text in docs.values():
        assert text.encode() in everything


def test_build_is_deterministic_and_cached(tmp_path):
    """The same source gives the same key and bytes anywhere; a second build reuses the cache."""
    _text_tree(tmp_path / "src")
    first, cached_first = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "one")
    other, cached_other = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "two")

    assert (cached_first, cached_other) == (False, False)
    assert first.key == other.key
    assert first.train_path.read_bytes() == other.train_path.read_bytes()
    assert first.val_path.read_bytes() == other.val_path.read_bytes()
    assert first.meta == other.meta

    again, cached_again = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "one")
    assert cached_again is True
    assert again == first
    # no staging folders are left next to the finished corpus
    assert sorted(p.name for p in (tmp_path / "one" / "data").iterdir()) == [first.key]


def test_changing_one_file_changes_the_key(tmp_path):
    """Editing the data must not silently reuse a stale cached corpus."""
    docs = _text_tree(tmp_path / "src")
    before, _ = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "cache")
    name = sorted(docs)[3]
    (tmp_path / "src" / name).write_text(docs[name] + "one more line\n")
    after, cached = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "cache")

    assert after.key != before.key
    assert not cached
    assert b"one more line" in after.train_path.read_bytes() + after.val_path.read_bytes()
    assert before.root.is_dir()  # the old corpus stays for workspaces that still use it


def test_no_document_in_both_splits_and_split_follows_names(tmp_path):
    """Validation must be unseen text: each document is in exactly one split, chosen by a hash
    of its name, so adding documents never moves existing ones."""
    docs = _text_tree(tmp_path / "src", count=40)
    built, _ = corpus.build("text", [tmp_path / "src"], val_percent=30.0,
                            cache_dir=tmp_path / "cache")
    train = built.train_path.read_bytes()
    val = built.val_path.read_bytes()
    assert built.meta["val_files"] > 1 and built.meta["train_files"] > 1

    for name, text in docs.items():
        marker = text.splitlines()[-1].encode()
        in_train, in_val = marker in train, marker in val
        assert in_train != in_val, name
        assert in_val == corpus._is_validation(name, 30.0), name

    # add documents: every old one stays on its side
    extra = {f"extra/new{i}.txt": _doc(f"new{i}") for i in range(10)}
    for rel, text in extra.items():
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_text(text)
    grown, _ = corpus.build("text", [tmp_path / "src"], val_percent=30.0,
                            cache_dir=tmp_path / "cache")
    grown_val = grown.val_path.read_bytes()
    for text in docs.values():
        marker = text.splitlines()[-1].encode()
        assert (marker in grown_val) == (marker in val)


@pytest.mark.parametrize("as_folder", [False, True])
def test_single_document_is_refused(tmp_path, as_folder):
    """One document cannot be split into train and validation; say so instead of training on
    nothing."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "only.txt").write_text(_doc("only", 5000))
    source = folder if as_folder else folder / "only.txt"
    with pytest.raises(corpus.CorpusError, match="single document") as info:
        corpus.build("text", [source], cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.bin"))


def test_missing_path_is_refused(tmp_path):
    """A typo in a data path is a one-line error naming the path."""
    missing = tmp_path / "no-such-folder"
    with pytest.raises(corpus.CorpusError, match="does not exist") as info:
        corpus.build("text", [missing], cache_dir=tmp_path / "cache")
    assert str(missing) in str(info.value)


def test_folder_without_text_files_is_refused(tmp_path):
    """A folder with nothing readable as text is an error, not an empty corpus."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"\x00\x01" * 100)
    with pytest.raises(corpus.CorpusError, match="no text files"):
        corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "cache")


def test_text_source_needs_paths(tmp_path):
    """`text` without paths is a user error rather than a silent stdlib corpus."""
    with pytest.raises(corpus.CorpusError, match="needs at least one path"):
        corpus.build("text", [], cache_dir=tmp_path / "cache")


def _write_parquet(path, texts, column="text"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({column: texts, "id": [f"ID-COLUMN-{i}" for i in range(len(texts))]})
    pq.write_table(table, path)


def test_parquet_source_reads_the_text_column(tmp_path):
    """Parquet rows are documents; only the named column is read, other columns are not."""
    texts = [_doc(f"row{i}", 600) for i in range(20)]
    _write_parquet(tmp_path / "shard.parquet", texts)
    built, cached = corpus.build("parquet", [tmp_path / "shard.parquet"],
                                 cache_dir=tmp_path / "cache")
    assert not cached
    meta = built.meta
    assert meta["source"] == "parquet"
    assert meta["files"] == len(texts)
    assert meta["bytes"] == sum(len(t.encode()) for t in texts)
    both = built.train_path.read_bytes() + built.val_path.read_bytes()
    assert b"ID-COLUMN" not in both
    for text in texts:
        assert text.encode() in both


def test_parquet_other_column_name(tmp_path):
    """`column` picks a differently named text column."""
    texts = [_doc(f"row{i}", 400) for i in range(5)]
    _write_parquet(tmp_path / "shard.parquet", texts, column="body")
    built, _ = corpus.build("parquet", [tmp_path / "shard.parquet"], column="body",
                            cache_dir=tmp_path / "cache")
    assert built.meta["files"] == len(texts)


def test_parquet_wrong_column_is_refused(tmp_path):
    """Asking for a column the file lacks names the column in the error."""
    _write_parquet(tmp_path / "shard.parquet", [_doc("a"), _doc("b")])
    with pytest.raises(corpus.CorpusError, match="'content'"):
        corpus.build("parquet", [tmp_path / "shard.parquet"], column="content",
                     cache_dir=tmp_path / "cache")


def test_parquet_missing_file_is_refused(tmp_path):
    """A missing parquet shard is a CorpusError, not a pyarrow traceback."""
    with pytest.raises(corpus.CorpusError, match="does not exist"):
        corpus.build("parquet", [tmp_path / "nope.parquet"], cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("val_percent", [0, 0.0, 100, 100.0, -5, 150])
def test_val_percent_out_of_range(tmp_path, val_percent):
    """Validation share must leave both splits possible."""
    _text_tree(tmp_path / "src")
    with pytest.raises(corpus.CorpusError, match="val_percent"):
        corpus.build("text", [tmp_path / "src"], val_percent=val_percent,
                     cache_dir=tmp_path / "cache")


def test_unknown_source_is_refused(tmp_path):
    """A misspelt source name is an error that lists the real ones."""
    with pytest.raises(corpus.CorpusError, match="stdlib, text or parquet"):
        corpus.build("txt", [tmp_path], cache_dir=tmp_path / "cache")


def test_stdlib_corpus_is_large_enough(tmp_path):
    """The default corpus, available offline everywhere, is big enough to train and evaluate."""
    built, cached = corpus.build("stdlib", cache_dir=tmp_path / "cache")
    meta = built.meta
    assert not cached
    assert meta["source"] == "stdlib"
    assert meta["files"] > 1000
    assert meta["bytes"] > 10_000_000
    assert meta["val_bytes"] > 500_000
    assert meta["train_bytes"] > meta["val_bytes"]
    assert meta["val_bytes"] == built.val_path.stat().st_size
    assert meta["train_bytes"] == built.train_path.stat().st_size


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    """RATCHET_CACHE_DIR wins; otherwise XDG_CACHE_HOME/ratchet is used."""
    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "override"))
    assert corpus.default_cache_dir() == tmp_path / "override"
    monkeypatch.delenv("RATCHET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus.default_cache_dir() == tmp_path / "xdg" / "ratchet"


def _stdlib_docs(names) -> list[bytes]:
    return [path.read_bytes().replace(corpus.SEPARATOR, b"")
            for name, path in corpus._stdlib_files() if name in names]


def test_stdlib_validation_is_exactly_the_held_out_packages(tmp_path):
    """Every .py file of the held-out packages is in validation, in order, and nothing else; the
    rest of the standard library is the training split."""
    built, _ = corpus.build("stdlib", cache_dir=tmp_path / "cache")
    meta = built.meta
    assert meta["split"] == "held-out-packages"
    assert meta["held_out"] == corpus.held_out_here()
    assert {"idlelib", "pydoc_data", "xmlrpc"} <= set(meta["held_out"])
    assert set(meta["held_out"]) <= set(corpus.HELD_OUT_PACKAGES)
    names = [name for name, _ in corpus._stdlib_files()]
    held = {n for n in names if n.split("/")[1] in meta["held_out"] and n.count("/") > 1}
    assert any(n.startswith("stdlib/idlelib/") for n in held)
    assert _documents(built.val_path) == _stdlib_docs(held)
    assert _documents(built.train_path) == _stdlib_docs(set(names) - held)
    assert meta["val_files"] == len(held) and meta["train_files"] == len(names) - len(held)
    assert meta["val_bytes"] > 4 * corpus.MIN_HELD_OUT_BYTES  # well above what evaluation needs
    assert "val_percent" not in meta
    assert corpus.describe(meta).startswith("stdlib, validation = held-out packages ")


def test_stdlib_split_is_stable(tmp_path):
    """The same interpreter gives the same corpus key, split and bytes every time."""
    one, _ = corpus.build("stdlib", cache_dir=tmp_path / "one")
    two, cached = corpus.build("stdlib", cache_dir=tmp_path / "two")
    assert not cached and one.key == two.key and one.meta == two.meta
    assert one.val_path.read_bytes() == two.val_path.read_bytes()
    assert corpus.build("stdlib", cache_dir=tmp_path / "one") == (one, True)


def test_too_few_held_out_bytes_is_one_line_error(tmp_path, monkeypatch):
    """A Python whose held-out packages are (nearly) missing cannot make the default corpus."""
    monkeypatch.setattr(corpus, "HELD_OUT_PACKAGES", ("dbm", "no_such_package"))
    with pytest.raises(corpus.CorpusError, match=r"held-out stdlib packages \(dbm\)") as info:
        corpus.build("stdlib", cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value) and "--text" in str(info.value)


def test_text_corpus_keeps_the_name_hash_split(tmp_path):
    _text_tree(tmp_path / "src", count=12)
    meta = corpus.build("text", [tmp_path / "src"], cache_dir=tmp_path / "cache")[0].meta
    assert meta["split"] == "name-hash" and meta["val_percent"] == 5.0
    assert corpus.describe(meta) == "text, name-hash split (5% of documents in validation)"


def test_old_stdlib_corpus_still_loads_and_says_so(tmp_path):
    """A corpus cached by an earlier release (meta.json without "split") is used as it is, and
    described as the name-hash split whose validation train.py could read."""
    root = tmp_path / "data" / "0123456789abcdef"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / split / f"{split}.bin").write_bytes(b"x = 1\n" * 1000)
    (root / "meta.json").write_text('{"key": "0123456789abcdef", "source": "stdlib", '
                                    '"val_percent": 5.0, "val_bytes": 6000}')
    old = corpus.Corpus("0123456789abcdef", root)
    assert old.meta["val_bytes"] == 6000
    text = corpus.describe(old.meta)
    assert text.startswith("stdlib, name-hash split (validation readable by train.py")
    assert "ratchet prepare --stdlib" in text
    old.record(val_hidden=False)
    assert old.meta == {"key": "0123456789abcdef", "source": "stdlib", "val_percent": 5.0,
                        "val_bytes": 6000, "val_hidden": False}
    assert corpus.describe(old.meta).endswith("; probe: validation text READABLE by train.py")


def test_samples_are_validation_line_starts_not_in_training(tmp_path):
    built, _ = corpus.build("stdlib", cache_dir=tmp_path / "cache")
    samples = built.samples(64)
    assert len(set(samples)) == 64 and {len(s) for s in samples} == {64}
    assert built.samples(64) == samples  # the same for the same corpus
    val, train = built.val_path.read_bytes(), built.train_path.read_bytes()
    for sample in samples:
        assert b"\n" + sample in val or val.startswith(sample)
        assert sample not in train and b"\n" not in sample
