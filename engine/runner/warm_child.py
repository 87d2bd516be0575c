"""The start of a training process that begins before its turn (run as `python -c <this file>`).

Ratchet starts it while another experiment trains: it imports torch and the compiler front end
that torch.export and torch.compile use, then waits. A line on stdin with the experiment's
environment runs train.py as `python train.py` would; end of input exits without running it.
It creates the file $RATCHET_READY once its imports are done.
"""

import contextlib
import json
import os
import runpy
import sys

import numpy  # noqa: F401
import torch  # noqa: F401

with contextlib.suppress(Exception):  # a head start only; train.py meets real errors itself
    import torch._dynamo  # noqa: F401

# Ready: the engine starts train.py's clock only now, so no run pays for these imports.
with contextlib.suppress(OSError, KeyError):
    open(os.environ.pop("RATCHET_READY"), "w").close()  # noqa: SIM115

line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)
os.environ.update(json.loads(line))
times = os.times()  # on the CPU clock the run's time starts now, not at the imports above
os.environ["RATCHET_CPU_MARK"] = repr(times.user + times.system)
sys.stdin.close()
sys.stdin = open(os.devnull)  # noqa: SIM115 - stands in for the closed pipe, as in a cold start
sys.argv = ["train.py"]
sys.path[0] = os.getcwd()  # `python train.py` puts the script's folder first
runpy.run_path(os.path.abspath("train.py"), run_name="__main__")
