"""Second round of train.py variants that attack the metric, for tests/test_red_team_two.py.

Each trains the honest bigram table (as tests/red_team.py does) and then games one surface the
first round left open: the allowance, the probe comparison, the CPU clock, or the sandbox's
privileges. The tests assert that each is refused or gets no more than an honest run.
"""

from red_team import HONEST, attack

_TABLE = '''
import os, time
import numpy as np
import torch
import torch.nn.functional as F
import prepare

data = np.asarray(prepare.load_train_data()[:2_000_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log((counts.reshape(256, 256) + 1.0)), dtype=torch.float32)
'''

_SAVE = '''
prepare.save_model(torch.nn.Embedding.from_pretrained(table), {"steps": 1})
'''

# The allowance. Burning CPU stands in for training: what counts is how long it may go on.
# Trains until the deadline prepare.time_left() gives, keeping only what its export needs.
TRAINS_TO_THE_DEADLINE = _TABLE + '''
while prepare.time_left() > 0.4:
    sum(range(20000))
print(f"trained for {prepare.clock():.2f} s of the run's clock", flush=True)
''' + _SAVE

# Ignores the clock: trains for twice the budget it is told.
MULTIPLIES_ITS_BUDGET = _TABLE + '''
end = prepare.clock() + 2 * prepare.budget_seconds()
while prepare.clock() < end:
    sum(range(20000))
''' + _SAVE

# Hands over on time, then goes on training past its hand-off, and replaces the model it
# handed over with a better one before the engine gets round to killing it.
TRAINS_AFTER_ITS_HAND_OFF = _TABLE + '''
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
prepare.save_model(torch.nn.Embedding.from_pretrained(table), {"steps": 1})
start = time.time()
while time.time() - start < 2.5:
    sum(range(20000))
cheat = torch.full((256, 256), -5.0)
torch.export.save(torch.export.export(torch.nn.Embedding.from_pretrained(cheat),
                  (torch.zeros(*prepare.eval_shape(), dtype=torch.long),)),
                  os.path.join(os.environ["RATCHET_OUT"], "model.pt2"))
print("replaced the model after the hand-off", flush=True)
time.sleep(30)
'''

# Work done in a chain of short-lived children that nobody waits for: with SIGCHLD ignored the
# kernel reaps them, and their CPU time reaches no parent's children_* counter.
FARMS_OUT_TO_REAPED_CHILDREN = _TABLE + '''
import signal
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
end = time.time() + 6 * prepare.budget_seconds() * int(os.environ.get("RATCHET_CORES", "1"))
while time.time() < end:
    if os.fork() == 0:
        stop = time.process_time() + 0.05
        while time.process_time() < stop:
            pass
        os._exit(0)
    time.sleep(0.01)
''' + _SAVE

# A daemon (double fork, own session) does the work outside the trainer's process tree, then
# the trainer hands over what it made.
TRAINS_IN_A_DAEMON = _TABLE + '''
done = os.path.join(os.environ["RATCHET_OUT"], "daemon-done")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        stop = time.process_time() + 4 * prepare.budget_seconds() * int(
            os.environ.get("RATCHET_CORES", "1")) + 4
        while time.process_time() < stop:
            pass
        open(done, "w").close()
    os._exit(0)
while not os.path.exists(done):
    time.sleep(0.05)
''' + _SAVE


# Evaluation: peeks at the next token and hides the difference from the causality probes.
def _peeks(extra: str) -> str:
    return attack(f'''
class Cheat(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx):
        ahead = F.one_hot(torch.roll(idx, -1, 1), 256).float() * 30
        logits = self.table[idx] + ahead
        {extra}
''')


PEEKS = {
    # byte 255, which no UTF-8 text holds: -inf there switches the comparison off
    "minus-inf": _peeks("return torch.cat([logits[..., :-1], "
                        "logits[..., -1:] * 0 - float('inf')], -1)"),
    # a huge finite logit: a tolerance relative to the largest logit swallows the peek
    "huge-finite": _peeks("return torch.cat([logits[..., :-1], logits[..., -1:] * 0 - 1e30], "
                          "-1)"),
    "huge-offset": _peeks("return logits + 1e7"),
    "nan-unused-byte": _peeks("return torch.cat([logits[..., :-1], "
                              "logits[..., -1:] * 0 + float('nan')], -1)"),
}

# The sandbox's privileges: each attempt is reported, then the honest model is handed over.
ESCAPES = '''
import ctypes, ctypes.util, errno, json, os, time
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
report = {}

def attempt(name, call):
    try:
        ok = call()
    except OSError as exc:
        report[name] = errno.errorcode.get(exc.errno, str(exc.errno))
        return
    report[name] = "ok" if ok in (None, 0) or ok is True else (
        errno.errorcode.get(ctypes.get_errno(), "failed") if ok == -1 else f"ok:{ok}")

with open("/proc/self/status") as f:
    report["CapEff"] = [l.split()[1] for l in f if l.startswith("CapEff")][0]
report["ns"] = {n: os.readlink(f"/proc/self/ns/{n}") for n in
                ("user", "uts", "ipc", "net", "pid", "cgroup", "mnt")}
stdlib = os.path.dirname(os.__file__)
hidden = os.path.join(stdlib, "idlelib")
attempt("umount", lambda: libc.umount2(hidden.encode(), 2))  # MNT_DETACH
attempt("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
report["held_out_visible"] = sorted(os.listdir(hidden))[:3] if os.path.isdir(hidden) else []

class Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * 128)]

def by_handle():
    handle, mount_id = Handle(bytes=128), ctypes.c_int()
    if libc.name_to_handle_at(-100, b"/usr", ctypes.byref(handle), ctypes.byref(mount_id), 0):
        return -1
    fd = os.open("/usr", os.O_RDONLY)
    return 0 if libc.open_by_handle_at(fd, ctypes.byref(handle), os.O_RDONLY) >= 0 else -1
attempt("open_by_handle_at", by_handle)
attempt("add_key", lambda: 0 if libc.syscall(248, b"user", b"ratchet-weights", b"w", 1,
                                                 -4) >= 0 else -1)  # x86-64 add_key
attempt("keyctl", lambda: 0 if libc.syscall(250, 0, -4, 0) >= 0 else -1)  # KEYCTL_GET_KEYRING_ID

def write_back(path):
    with open(path) as f:
        value = f.read()
    with open(path, "w") as f:  # the value it had: a success changes nothing, but says all
        f.write(value)
attempt("proc_sys", lambda: write_back("/proc/sys/vm/swappiness"))

def trace_a_child():
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    try:
        return libc.ptrace(16, child, 0, 0)  # PTRACE_ATTACH
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
attempt("ptrace", trace_a_child)
attempt("bpf", lambda: libc.syscall(321, 0, 0, 0))  # x86-64 bpf(BPF_MAP_CREATE, NULL, 0)
attempt("unshare_user", lambda: libc.unshare(0x10000000))  # CLONE_NEWUSER
attempt("perf_event_open", lambda: libc.syscall(298, 0, 0, -1, -1, 0))

def raw_disk():
    import stat
    for name in sorted(os.listdir("/dev")):
        if stat.S_ISBLK(os.stat("/dev/" + name).st_mode):
            os.close(os.open("/dev/" + name, os.O_RDONLY))
            return True
    raise OSError(errno.ENOENT, "no block device in view")
attempt("raw_disk", raw_disk)
print("ESCAPES " + json.dumps(report), flush=True)
''' + HONEST
