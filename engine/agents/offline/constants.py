"""The numeric constants of a Python file: read them with `ast`, write one back in place.

Every number the offline agent reads or writes as text (the file, a description, a note) goes
through `parse_number` and `format_value`, so all three always say the same value.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

from ratchet.engine.agents.base import AgentError

Number = int | float

# A number as written in source or a note: 3, -0.5, .25, 1e-3, 2.
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# Constants that do not change the measured result; searching them would waste experiments.
# Bookkeeping, not hyperparameters: changing them cannot make a better model (the hand-off
# reserve only moves time between training and the export the allowance must still fit).
IGNORED = frozenset({"LOG_EVERY", "EVAL_EVERY", "PRINT_EVERY", "SAVE_EVERY", "CHECKPOINT_EVERY",
                     "HANDOFF_RESERVE_S"})

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")

# What describes the machine, not the model: a peak throughput to compute MFU with, a per-device
# micro-batch (autoresearch accumulates gradients to a fixed total, so only memory changes).
HARDWARE = ("PEAK", "FLOPS", "DEVICE_")
FIXED_MARK = re.compile(r"#.*\bratchet:\s*fixed\b")  # "X = 1  # ratchet: fixed" is never searched
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b, ast.Pow: lambda a, b: a ** b}


@dataclass(frozen=True)
class Constant:
    """A top-level numeric constant and where its value's source text sits in the file."""

    name: str
    value: Number
    start: int  # character offsets of the value's source text (including a leading minus)
    end: int


def parse_number(text: str) -> Number:
    """A float when the text has a point or an exponent, else an int; ValueError otherwise."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def format_value(value: Number) -> str:
    """Source text for a value: Python's shortest repr (0.0173, 2e-05, 10000.0).

    Values the agent picks are already rounded to 4 significant digits, so this stays readable
    and the file, the description and `changes` all say the same number."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def searchable(name: str) -> bool:
    """Whether changing this constant can change val_bpb (seeds only reshuffle noise)."""
    return not why_fixed(name)


def why_fixed(name: str) -> str:
    """Why a constant is left as it is by its name ('' when it is a hyperparameter)."""
    if name in IGNORED:
        return "bookkeeping"
    if "SEED" in name:
        return "a seed"
    if any(word in name for word in HARDWARE):
        return "hardware"
    return ""


def unsearched(source: str) -> dict[str, str]:
    """Top-level UPPER_CASE constants the search leaves alone, each with the reason, in file
    order: the output says so, rather than skipping them silently."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    numbers = parse_constants(source)
    lines = source.split("\n")
    reasons: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, expr = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, expr = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or not _NAME.fullmatch(target.id):
            continue
        name = target.id
        if name in numbers:
            why = "marked fixed" if _marked(lines, expr) else why_fixed(name)
        elif isinstance(expr, ast.Tuple | ast.List):
            why = "a tuple" if isinstance(expr, ast.Tuple) else "a list"
        elif isinstance(expr, ast.Constant) and isinstance(expr.value, bool):
            why = "a flag"
        elif _number(expr) is not None:
            why = "assigned more than once or over several lines"
        else:
            why = "not a number"
        if why:
            reasons.setdefault(name, why)
    return reasons


def parse_constants(source: str) -> dict[str, Constant]:
    """Top-level UPPER_CASE constants assigned once to an int or float literal, in file order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise AgentError(f"cannot parse the target file: {error.msg} (line {error.lineno})") \
            from error
    assigned: Counter[str] = Counter()
    found: list[tuple[str, ast.expr]] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    assigned[sub.id] += 1
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            found.append((node.targets[0].id, node.value))
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and node.value is not None):
            found.append((node.target.id, node.value))
    starts = _line_starts(source)
    lines = source.split("\n")
    constants: dict[str, Constant] = {}
    for name, expr in found:
        # assigned twice means the effective value depends on control flow: leave it alone
        if not _NAME.fullmatch(name) or assigned[name] != 1:
            continue
        value = _number(expr)
        if value is None or expr.lineno != expr.end_lineno:
            continue
        # ast columns are UTF-8 byte offsets; convert them to character offsets
        line = lines[expr.lineno - 1].encode()
        begin = starts[expr.lineno - 1] + len(line[: expr.col_offset].decode())
        end = starts[expr.lineno - 1] + len(line[: expr.end_col_offset].decode())
        constants[name] = Constant(name, value, begin, end)
    return constants


def with_value(source: str, constant: Constant, value: Number) -> str:
    """The source with only this constant's value text replaced; everything else byte-identical."""
    return source[: constant.start] + format_value(value) + source[constant.end:]


def _line_starts(source: str) -> list[int]:
    # ast counts lines by "\n" only; str.splitlines would also split on form feeds and friends
    return [0] + [match.end() for match in re.finditer("\n", source)]


def _marked(lines: list[str], expr: ast.expr) -> bool:
    return any(FIXED_MARK.search(lines[i - 1]) for i in range(expr.lineno,
                                                              (expr.end_lineno or 0) + 1))


def _number(expr: ast.expr) -> Number | None:
    """The value of literal arithmetic (`2**11`, `-0.5`, `3 * 1024`), never running code."""
    try:
        value = _evaluate(expr)
    except (ArithmeticError, ValueError, TypeError):
        return None
    if not isinstance(value, (int, float)) or (isinstance(value, int) and abs(value) > 2**63):
        return None  # complex ((-1) ** 0.5) or too big to be a hyperparameter
    return value


def _evaluate(expr: ast.expr) -> Number | None:
    if isinstance(expr, ast.Constant):
        ok = isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool)
        return expr.value if ok else None
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        inner = _evaluate(expr.operand)
        return None if inner is None else (-inner if isinstance(expr.op, ast.USub) else inner)
    if isinstance(expr, ast.BinOp) and type(expr.op) in _OPS:
        left, right = _evaluate(expr.left), _evaluate(expr.right)
        if left is None or right is None:
            return None
        if isinstance(expr.op, ast.Pow) and abs(right) > 64:  # bounded: no 10**10**10
            return None
        return _OPS[type(expr.op)](left, right)
    return None
