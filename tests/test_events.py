"""The event log: what writers put in it and what readers get back, torn and bad lines included."""

from __future__ import annotations

import json
import re
import threading

import pytest

from ratchet.engine.protocol import events, schema
from ratchet.engine.protocol.events import EventLog, LogTail, TextBatcher, iter_events, read_events


@pytest.fixture
def log(tmp_path):
    log = EventLog(tmp_path / "run" / "events.jsonl")
    yield log
    log.close()


def lines(path):
    return path.read_bytes().decode().splitlines()


def test_append_is_visible_to_a_reader_at_once(log):
    event = log.append(schema.EXP_START, 1, kind="baseline", seed=0)
    assert event["type"] == schema.EXP_START and event["exp"] == 1 and event["kind"] == "baseline"
    assert isinstance(event["t"], float)
    # No sync or close: flushing on append is what lets a dashboard tail the log.
    got, offset, bad = read_events(log.path)
    assert got == [event] and bad == 0
    assert offset == log.path.stat().st_size
    assert lines(log.path) == [json.dumps(event, separators=(",", ":"))]


def test_exp_is_left_out_when_none(log):
    assert "exp" not in log.append(schema.SESSION_START, pid=1)
    assert "exp" not in json.loads(lines(log.path)[0])


def test_non_finite_floats_become_null(log):
    event = log.append(
        schema.TRAIN_LOG, 2, loss=float("nan"), lr=float("inf"), nested={"x": [float("-inf"), 1.5]}
    )
    assert event["loss"] is None and event["lr"] is None and event["nested"] == {"x": [None, 1.5]}
    raw = lines(log.path)[0]
    assert "NaN" not in raw and "Infinity" not in raw
    assert json.loads(raw)["nested"] == {"x": [None, 1.5]}


def test_values_json_cannot_encode_are_written_as_text(log):
    event = log.append(schema.PROPOSAL, 1, files={"train.py"}, based_on=log.path)
    read, _, _ = read_events(log.path)
    assert read[0]["based_on"] == str(log.path) and read[0]["files"] == str(event["files"])


def test_numpy_scalars_are_written_by_value(log):
    np = pytest.importorskip("numpy")
    event = log.append(
        schema.TRAIN_LOG, 1, loss=np.float32(2.5), bad=np.float32("nan"), step=np.int64(7)
    )
    got, _, _ = read_events(log.path)
    assert {k: got[0][k] for k in ("loss", "bad", "step")} == {"loss": 2.5, "bad": None, "step": 7}
    assert event["step"] == 7


def test_append_after_close_raises(tmp_path):
    log = EventLog(tmp_path / "e.jsonl")
    log.close()
    log.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        log.append("x")


def test_reader_holds_back_a_partial_last_line(tmp_path):
    path = tmp_path / "e.jsonl"
    with EventLog(path) as log:
        first = log.append("a", 1)
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"t":1.0,"type":"b","ex')  # a writer caught mid-line
    got, offset, bad = read_events(path)
    assert (got, offset, bad) == ([first], whole, 0)
    with open(path, "ab") as f:
        f.write(b'p":2}\n')  # ... which then finishes it
    got, offset, bad = read_events(path, offset)
    assert got == [{"t": 1.0, "type": "b", "exp": 2}] and bad == 0
    assert offset == path.stat().st_size
    assert [e["type"] for e in iter_events(path)] == ["a", "b"]


def test_new_log_ends_a_torn_line_first(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"t":1.0,"type":"a"}\n{"t":2.0,"type":"b","text":"cut sho')
    with EventLog(path) as log:
        log.append(schema.SESSION_START, resumed=True)
    got, offset, bad = read_events(path)
    assert [e["type"] for e in got] == ["a", schema.SESSION_START]
    assert bad == 1 and offset == path.stat().st_size
    assert lines(path)[1] == '{"t":2.0,"type":"b","text":"cut sho'


def test_new_log_adds_nothing_to_a_clean_file(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"t":1.0,"type":"a"}\n')
    EventLog(path).close()
    assert path.read_bytes() == b'{"t":1.0,"type":"a"}\n'
    empty = tmp_path / "empty.jsonl"
    EventLog(empty).close()
    assert empty.read_bytes() == b""


def test_bad_lines_in_the_middle_are_skipped_and_counted(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        b'{"t":1.0,"type":"a"}\n'
        b"garbage\n"
        b"\n"  # blank lines are not events, nor errors
        b'[1,2]\n{"t":2.0}\n{"t":2.0,"type":7}\n\xff\xfe\n'
        b'{"t":3.0,"type":"b","exp":1}\n'
    )
    got, offset, bad = read_events(path)
    assert [e["type"] for e in got] == ["a", "b"]
    assert bad == 5 and offset == path.stat().st_size
    assert [e["type"] for e in iter_events(path)] == ["a", "b"]


def test_offsets_resume_without_rereading(log, monkeypatch):
    monkeypatch.setattr(events, "CHUNK_BYTES", 7)  # lines span many chunks
    log.append("a", 1, text="x" * 30)
    got, offset, _ = read_events(log.path)
    assert [e["type"] for e in got] == ["a"]
    assert read_events(log.path, offset) == ([], offset, 0)
    log.append("b", 2)
    log.append("c", 3)
    got, offset2, _ = read_events(log.path, offset)
    assert [e["type"] for e in got] == ["b", "c"] and offset2 == log.path.stat().st_size


def test_log_tail_returns_only_new_events_and_warns_once(tmp_path):
    path = tmp_path / "e.jsonl"
    warned = []
    tail = LogTail(path, on_warning=warned.append)
    assert tail.poll() == []  # no file yet
    log = EventLog(path)
    log.append("a")
    assert [e["type"] for e in tail.poll()] == ["a"]
    assert tail.poll() == []
    with open(path, "ab") as f:
        f.write(b"oops\nagain\n")
    log.append("b")
    assert [e["type"] for e in tail.poll()] == ["b"]
    with open(path, "ab") as f:
        f.write(b"more\n")
    assert tail.poll() == []
    log.close()
    assert tail.bad_lines == 3 and len(warned) == 1 and str(path) in warned[0]


def test_log_tail_warns_through_warnings_without_a_callback(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"bad\n")
    with pytest.warns(RuntimeWarning, match="not a valid event"):
        assert LogTail(path).poll() == []


def test_log_tail_rereads_a_replaced_file(tmp_path):
    path = tmp_path / "e.jsonl"
    with EventLog(path) as log:
        log.append("a", text="long enough to be longer than the new file")
    tail = LogTail(path)
    assert len(tail.poll()) == 1
    path.write_bytes(b'{"t":1,"type":"new"}\n')
    assert [e["type"] for e in tail.poll()] == ["new"]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def deltas(path):
    return [e for e in iter_events(path) if e["type"] == schema.AGENT_DELTA]


def test_text_batcher_by_size(log):
    batcher = TextBatcher(log, 4, interval=3600, max_chars=10)
    batcher.add("abcd")
    batcher.add("efgh")
    assert deltas(log.path) == []
    batcher.add("ijkl")  # 12 characters: over max_chars
    batcher.add("")
    batcher.add("mn")
    got = deltas(log.path)
    assert [(e["exp"], e["text"]) for e in got] == [(4, "abcdefghijkl")]
    batcher.flush()
    batcher.flush()  # nothing left: no empty event
    assert [e["text"] for e in deltas(log.path)] == ["abcdefghijkl", "mn"]


def test_text_batcher_by_interval(log, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(events.time, "monotonic", clock)
    batcher = TextBatcher(log, 1, interval=0.1, max_chars=2000)
    batcher.add("a")
    clock.now += 0.05
    batcher.add("b")
    assert deltas(log.path) == []
    clock.now += 0.06  # the oldest text is now 0.11 s old
    batcher.add("c")
    assert [e["text"] for e in deltas(log.path)] == ["abc"]
    clock.now += 5  # an idle gap does not count against the next batch
    batcher.add("d")
    clock.now += 0.01
    batcher.add("e")
    assert [e["text"] for e in deltas(log.path)] == ["abc"]
    batcher.flush()
    assert [e["text"] for e in deltas(log.path)] == ["abc", "de"]


def test_appends_from_many_threads_stay_whole_lines(log):
    per_thread, threads = 1000, 4

    def work(n):
        for i in range(per_thread):
            log.append(schema.TRAIN_LOG, n, step=i, text="y" * (i % 50))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.sync()
    got, _, bad = read_events(log.path)
    assert bad == 0 and len(got) == per_thread * threads
    assert len(lines(log.path)) == per_thread * threads
    for n in range(threads):
        assert [e["step"] for e in got if e["exp"] == n] == list(range(per_thread))


def test_parse_line_and_parse_lines_agree_on_every_kind_of_line():
    raw = [b'{"t":1.0,"type":"a","exp":2}', b'{"t": 2, "exp": 3, "type": "b"}', b"garbage",
           b'{"t":true,"type":"a"}', b'{"t":1,"type":"a","exp":1.5}', b'{"t":1,"type":"a",'
           b'"val_bpb":"low"}', b'{"t":1,"type":"a","delta":null}', b"1,2", b"[]", b'{"t":1}']
    one_by_one = [events.parse_line(line) for line in raw]
    assert [e["type"] if e else None for e in one_by_one] == \
        ["a", "b", None, None, None, None, "a", None, None, None]
    assert events.parse_lines(raw) == one_by_one  # a damaged line: decoded one by one
    whole = [line for line, e in zip(raw, one_by_one, strict=True) if e]
    assert events.parse_lines(whole) == [e for e in one_by_one if e]  # in one decoder call
    assert events.parse_lines([raw[3], raw[4], raw[0]]) == [None, None, one_by_one[0]]
    assert events.parse_lines([]) == []


def test_type_pattern_reads_what_the_writer_wrote_and_nothing_else(log):
    written = [log.append(schema.TRAIN_LOG, 3, step=1), log.append(schema.TRAIN_LOG, 31, step=1),
               log.append(schema.AGENT_DELTA, 3, text='"type":"train_log","exp":3'),
               log.append(schema.RESOURCES, gpus=[{"type": "train_log"}]),
               log.append(schema.TRAIN_LOG, step=2)]
    found = {}
    for name, spec in {"exp 3": {schema.TRAIN_LOG: 3}, "any": {schema.TRAIN_LOG: events.ANY},
                       "streams": schema.STREAMS, "delta": [schema.AGENT_DELTA]}.items():
        pattern = re.compile(events.type_pattern(spec) + rb"[^\n]*")
        found[name] = [i for i, line in enumerate(log.path.read_bytes().splitlines())
                       if (m := pattern.match(line)) and m.group() == line]
    assert found == {"exp 3": [0], "any": [0, 1], "streams": [0, 1, 2, 3, 4], "delta": [2]}
    # Another layout is never matched, so a reader parses it: no event is mistaken for another.
    other = [json.dumps(e).encode() for e in written] + \
        [json.dumps({"type": e["type"], **e}, separators=(",", ":")).encode() for e in written]
    pattern = re.compile(events.type_pattern(schema.STREAMS))
    assert [line for line in other if pattern.match(line)] == []
