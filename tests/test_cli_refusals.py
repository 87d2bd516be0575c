"""What `ratchet` refuses, it refuses up front in one line, `ratchet: error: ...`: a bad
argument (usage stays on --help)."""

from __future__ import annotations

import pytest
from fault_checks import ratchet


def one_error_line(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ratchet: error: "), \
        done.stderr
    return done.stderr


@pytest.mark.parametrize("args", [
    ["run", "--budget", "soon"],
    ["run", "--agent", "nobody"],
    ["ls", "--no-such-flag"],
    ["frobnicate"],
    [],
    ["ctl"],
    ["report", "a", "b"],
])
def test_a_bad_argument_is_one_line(tmp_path, args):
    one_error_line(ratchet(*args, cwd=tmp_path, timeout=60))


def test_help_still_shows_the_usage(tmp_path):
    for args in (["--help"], ["run", "--help"]):
        done = ratchet(*args, cwd=tmp_path, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("usage: ratchet"), done.stdout
