"""train.py variants that attack the metric, for tests/test_red_team.py.

Each fits the honest bigram table (as tests/trainers.py does) and then exports a model that
games the evaluation one way: the test asserts the harness refuses it or scores it no better
than the honest model.
"""

# The honest bigram table, then one cheating module class, exported through the harness.
_TEMPLATE = '''
import numpy as np
import torch
import torch.nn.functional as F
import prepare

data = np.asarray(prepare.load_train_data()[:2_000_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log((counts.reshape(256, 256) + 1.0)), dtype=torch.float32)
batch, seq = prepare.eval_shape()
{model}
prepare.save_model(Cheat(table), {{"steps": 1}})
'''


def attack(model: str) -> str:
    return _TEMPLATE.format(model=model)


# Reads a file from inside the exported graph (the validation split, if it could name it).
READS_A_FILE = attack('''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx):
        leaked = torch.from_file("/etc/hostname", shared=False, size=1, dtype=torch.uint8)
        return self.table[idx] + leaked.float().sum() * 0
''')

# Counts its calls in a buffer: honest while the harness's checks run, peeking afterwards.
COUNTS_CALLS = attack('''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, idx):
        self.calls.add_(1)
        ahead = F.one_hot(torch.roll(idx, -1, 1), 256).float() * 30
        return torch.where(self.calls > 4, ahead, self.table[idx])
''')

# Peeks at the next byte everywhere except just before fixed cut points of a causality check.
SKIPS_FIXED_CUTS = attack('''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)
        honest = torch.zeros(seq, 1)
        for cut in (seq // 4, seq // 2, seq - seq // 8):
            honest[cut - 1] = 1.0
        self.register_buffer("honest", honest)

    def forward(self, idx):
        ahead = F.one_hot(torch.roll(idx, -1, 1), 256).float() * 30
        return self.honest * self.table[idx] + (1 - self.honest) * ahead
''')

# Reads the next row of the batch: with consecutive windows, its first byte is the one the last
# position of this row must predict.
READS_THE_NEXT_ROW = attack('''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx):
        following = F.one_hot(torch.roll(idx[:, 0], -1, 0), 256).float() * 30
        return torch.cat([self.table[idx][:, :-1], following[:, None]], dim=1)
''')

# Draws random numbers in the graph: a model whose answers change from call to call.
RANDOM = attack('''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx):
        logits = self.table[idx]
        return logits + torch.rand_like(logits) * 0.01
''')


# The clock. Each trains the honest table, then spends time the budget does not grant: wall
# time (sleeping: what a GPU run spends waiting on its device) or CPU time (computing).
def _spends(where: str, seconds_expr: str, how: str = "sleep") -> str:
    spend = f"time.sleep({seconds_expr})" if how == "sleep" else \
        f"_end = time.process_time() + {seconds_expr}\nwhile time.process_time() < _end: pass"
    early = f"{spend}  # before its clock starts" if where == "import" else ""
    late = f"{spend}  # far past the budget" if where == "loop" else ""
    return f'''
import time
import numpy as np
import torch
import prepare
{early}
data = np.asarray(prepare.load_train_data()[:2_000_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log((counts.reshape(256, 256) + 1.0)), dtype=torch.float32)
t0 = time.time()
{late}
prepare.save_model(torch.nn.Embedding.from_pretrained(table), {{
    "steps": 1, "training_seconds": 0.5, "startup_seconds": 0.0}})  # what it says of itself
'''


TRAINS_PAST_THE_BUDGET = _spends("loop", "3 * prepare.budget_seconds() + 2")
TRAINS_AT_IMPORT = _spends("import", "3 * prepare.budget_seconds() + 2")
# on the CPU clock: CPU seconds past the budget on every core the engine counts
BURNS_PAST_THE_BUDGET = _spends("loop", "6 * prepare.budget_seconds() + 12", how="burn")
BURNS_AT_IMPORT = _spends("import", "6 * prepare.budget_seconds() + 12", how="burn")

# Limits: a process tree that keeps growing, memory beyond the limit, a kill from outside.
FORKS = '''
import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            for _ in range(40)]
time.sleep(60)
'''

HOARDS_MEMORY = '''
import time
hoard = bytearray(700 * 2**20)
for i in range(0, len(hoard), 4096):
    hoard[i] = 1  # touched, so resident
time.sleep(60)
'''

KILLED_FROM_OUTSIDE = '''
import os, signal
print("allocated 2 GiB", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''

# State between experiments: the first run leaves traces everywhere it can write; the second
# looks for them, and for any earlier run's exported model, across everything it can read.
HONEST_MODEL = '''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx):
        return self.table[idx]
'''

# The honest bigram table through a plain causal forward: what every check must accept.
HONEST = attack(HONEST_MODEL)

LEAVES_TRACES = '''
import os
for folder in ("/dev/shm", "/tmp", os.environ.get("TORCHINDUCTOR_CACHE_DIR", "/tmp")):
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "ratchet-trace"), "w") as f:
            f.write("weights from an earlier run")
        print(f"left a trace in {folder}", flush=True)
    except OSError as exc:
        print(f"cannot write {folder}: {exc}", flush=True)
''' + HONEST

LOOKS_FOR_TRACES = '''
import os
own = os.path.realpath(os.environ["RATCHET_OUT"])
found = []
for top, dirs, files in os.walk("/"):
    if top.startswith(("/proc", "/sys", "/dev/pts", "/usr", "/opt")):
        dirs[:] = []
        continue
    for name in files:
        path = os.path.join(top, name)
        if name == "ratchet-trace" or (name == "model.pt2"
                                       and not os.path.realpath(path).startswith(own)):
            found.append(path)
print(f"traces found: {found}", flush=True)
''' + HONEST
