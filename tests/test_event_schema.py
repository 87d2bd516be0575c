"""The event schema in code (`ratchet.engine.protocol.schema`) against what documents it
(docs/events.md), what writes events (the engine's sources) and what a real session wrote (the
recorded log under tests/data)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ratchet.engine.protocol import events, schema

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "events.md"
RECORDED = sorted((ROOT / "tests" / "data").glob("*.jsonl"))


def documented() -> dict[str, str]:
    """docs/events.md's "Types" table: type -> the text of its row's fields cell."""
    section = DOC.read_text().split("\n## Types\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):  # not the header nor the rule under it
            names, fields = line[1:].split("|", 1)
            for name in re.findall(r"`([a-z_]+)`", names):
                rows[name] = fields
    return rows


def test_the_docs_table_lists_exactly_the_schema_types():
    rows = documented()
    assert sorted(rows) == sorted(schema.EVENTS)


@pytest.mark.parametrize("spec", schema.EVENTS.values(), ids=lambda s: s.type)
def test_every_field_of_a_type_is_in_its_docs_row(spec):
    row = documented()[spec.type]
    assert [f for f in spec.fields if f"`{f}`" not in row] == []
    assert set(spec.required) <= set(spec.fields)


def test_constants_name_their_types():
    constants = {v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)}
    words = set(schema.DECISIONS) | set(schema.KINDS) | set(schema.STATUSES) | set(
        schema.STOP_REASONS) | set(schema.PHASES) | set(schema.STAGES) | set(schema.SHOWN) | set(
        schema.STUDY_KINDS) | set(schema.STUDIES) | set(schema.VERDICTS) | set(schema.FLAGS)
    assert constants - (words - set(schema.EVENTS)) == set(schema.EVENTS)
    assert all(getattr(schema, t.upper()) == t for t in schema.EVENTS)
    assert set(schema.STREAMS) <= set(schema.EVENTS)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_events_follow_the_schema(path):
    log = events.read_log(path, on_warning=pytest.fail)
    assert log, path
    unknown = sorted({e["type"] for e in log} - set(schema.EVENTS))
    assert unknown == []
    lacking = {(e["type"], f) for e in log for f in schema.missing_fields(e)}
    assert lacking == set()


def test_missing_fields():
    assert schema.missing_fields({"type": schema.CONTROL}) == ["cmd"]
    assert schema.missing_fields({"type": schema.CONTROL, "cmd": "pause"}) == []
    assert schema.missing_fields({"type": schema.PAUSED}) == []
    assert schema.missing_fields({"type": "something_new"}) == []


def written_types() -> dict[str, str]:
    """Event types the engine's sources still write as string literals (`emit("x", ...)`,
    `log.append("x", ...)`, `record("x", ...)`): type -> where."""
    found = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value if isinstance(func, ast.Attribute) else None
            owner_name = getattr(owner, "attr", None) or getattr(owner, "id", "")
            if name == "record" or (name == "emit" and owner is not None) or \
                    (name == "append" and owner_name == "log"):
                found[node.args[0].value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_every_type_the_engine_writes_is_in_the_schema():
    unknown = {t: where for t, where in written_types().items() if t not in schema.EVENTS}
    assert unknown == {}
