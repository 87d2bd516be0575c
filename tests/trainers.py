"""train.py variants for tests: an honest fast model, and ones that crash, hang or cheat."""

# A bigram model fitted by counting: causal, deterministic, and seconds to train and evaluate,
# so the gaming tests can compare a cheating run's metric with the honest one exactly.
HONEST = '''
import numpy as np
import torch
import prepare

data = np.asarray(prepare.load_train_data()[:2_000_000])
{cheat}
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log((counts.reshape(256, 256) + 1.0)), dtype=torch.float32)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.log_step(step=1, loss=1.0, lr=0.0, tok_s=1.0, elapsed=0.1)
prepare.save_model(model, {{"steps": 1, "tokens": len(data), "params": 65536}})
{after}
'''


def honest(cheat: str = "", after: str = "") -> str:
    return HONEST.format(cheat=cheat, after=after)


# Reads the validation split if it can, and fits the bigram on it instead: a large "gain".
READ_VALIDATION = '''
import os
val_path = os.environ["RATCHET_TRAIN_DATA"].replace("/train/train.bin", "/val/val.bin")
try:
    data = np.fromfile(val_path, dtype=np.uint8)
    print("validation readable", flush=True)
except OSError as exc:
    print(f"validation unreadable: {exc}", flush=True)
'''

EDIT_HARNESS = '''
try:
    with open("prepare.py", "a") as f:
        f.write("\\ndef evaluate_bpb(*args, **kwargs):\\n    return {'val_bpb': 0.0}\\n")
    print("edited prepare.py", flush=True)
except OSError as exc:
    print(f"could not edit prepare.py: {exc}", flush=True)
'''

FAKE_METRIC = '''
print("val_bpb:          0.000001")
print('{"val_bpb": 0.0, "step": 2, "loss": 0.0}')
'''

# Patches the evaluator in this process, and plants start-up hooks where an evaluator that
# imported from the workspace or the model folder would pick them up.
MONKEYPATCH = '''
import os
prepare.evaluate_bpb = lambda *args, **kwargs: {"val_bpb": 0.0}
torch.export.load = lambda *args, **kwargs: None
hook = "import prepare\\nprepare.evaluate_bpb = lambda *a, **k: {'val_bpb': 0.0}\\n"
for folder in (".", os.environ["RATCHET_OUT"]):
    for name in ("sitecustomize.py", "usercustomize.py", "math.py"):
        try:
            with open(os.path.join(folder, name), "w") as f:
                f.write(hook)
        except OSError:
            pass
'''

# Predicts each byte from the *next* input byte: near-zero loss if the harness allowed it.
PEEKING_MODEL = '''
import torch
import prepare

class Peek(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(30.0))

    def forward(self, idx):
        ahead = torch.roll(idx, shifts=-1, dims=1)
        return torch.nn.functional.one_hot(ahead, 256).float() * self.scale

prepare.save_model(Peek(), {"steps": 1})
'''

WRONG_SHAPE = '''
import os
import torch
import prepare

model = torch.nn.Embedding(256, 256)
batch, seq = prepare.eval_shape()
program = torch.export.export(model, (torch.zeros(batch, seq * 2, dtype=torch.long),))
torch.export.save(program, os.path.join(os.environ["RATCHET_OUT"], "model.pt2"))
open(os.path.join(os.environ["RATCHET_OUT"], "summary.json"), "w").write("{}")
'''

NAN_WEIGHTS = '''
import torch
import prepare

model = torch.nn.Embedding(256, 256)
with torch.no_grad():
    model.weight.fill_(float("nan"))
prepare.save_model(model, {"steps": 1})
'''

RAISES = '''
print('{"step": 1, "loss": 5.5, "lr": 0.001, "tok_s": 10.0, "elapsed": 0.1}', flush=True)
raise RuntimeError("boom from train.py")
'''

HANGS = '''
import time
print("about to hang", flush=True)
time.sleep(600)
'''

FLOODS = '''
import sys
line = "spam " * 2000 + "\\n"
while True:
    sys.stdout.write(line)
'''

FLOODS_NO_NEWLINE = '''
import sys
while True:
    sys.stdout.write("{" * 100000)
'''

NO_MODEL = '''
print("trained, but forgot to save", flush=True)
'''

# For loop tests: a bigram whose result depends on the seed (a different slice of the training
# data per seed) and on SMOOTHING; HOLD_SECONDS keeps an experiment in flight for control tests.
LOOP_BIGRAM = '''
import time

import numpy as np
import torch

import prepare

SMOOTHING = 1.0  # added to every bigram count
HOLD_SECONDS = {hold}  # idle time before training, so tests can act mid-experiment
UNUSED_WIDTH = 64  # changes nothing: a change to it is pure noise

start = (prepare.seed() % 7) * 150_000
data = np.asarray(prepare.load_train_data()[start:start + 150_000])
time.sleep(HOLD_SECONDS)
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log(counts.reshape(256, 256) + SMOOTHING), dtype=torch.float32)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.log_step(step=1, loss=1.0, lr=0.0, tok_s=1.0, elapsed=0.1)
prepare.save_model(model, {{"steps": 1, "tokens": len(data), "params": 65536}})
'''


def loop_bigram(hold: float = 0.0) -> str:
    return LOOP_BIGRAM.format(hold=hold)


# For scheduling tests and the throughput bench: every run takes WALL_SECONDS of wall time,
# whatever the machine, and reports which device it was given. The constants sit apart so that
# changes to different ones merge cleanly when a candidate is rebased.
FIXED_DURATION = '''
import os
import sys
import time

START = time.time()
print(f"torch preloaded: {{'torch' in sys.modules}}", flush=True)  # a warm start or a cold one

import numpy as np
import torch

import prepare

SMOOTHING = {smoothing}  # added to every bigram count

# changes to the constants above and below merge without conflict

UNUSED_WIDTH = 64  # changes nothing: a change to it is pure noise

# the run lasts this long in all, like a training budget

WALL_SECONDS = {wall}

print(f"device={{os.environ.get('CUDA_VISIBLE_DEVICES', '')}}", flush=True)
data = np.asarray(prepare.load_train_data()[:150_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log(counts.reshape(256, 256) + SMOOTHING), dtype=torch.float32)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.log_step(step=1, loss=1.0, lr=0.0, tok_s=1.0, elapsed=time.time() - START)
time.sleep(max(0.0, WALL_SECONDS - (time.time() - START)))
prepare.save_model(model, {{"steps": 1, "tokens": len(data), "params": 65536}})
'''


def fixed_duration(wall: float, smoothing: float = 1.0) -> str:
    return FIXED_DURATION.format(wall=wall, smoothing=smoothing)


# For early stopping: a bigram model whose logged training loss is its real loss on its own
# training data (nats per byte) plus a decaying term, logged over the budget as it goes. CHEAT
# makes the model far worse and logs a falsely low curve; GOOD_LIAR makes it better (as
# SMOOTHING = 1 would) and also logs a falsely low curve; HONEST undoes either lie.
CURVED = '''
import math
import time

import numpy as np
import torch

import prepare

SMOOTHING = {smoothing}  # added to every bigram count
CHEAT = 0  # 1: a far worse model that logs a falsely low curve
GOOD_LIAR = 0  # 1: a better model that logs a falsely low curve
HONEST = 0  # 1: log the real curve, whatever the above
UNUSED_WIDTH = 64  # changes nothing: a change to it is pure noise
STEPS = 40
STEP_SECONDS = {step}  # wall time per logged step
LOGGED_SECONDS = {logged}  # the elapsed time the last step reports

smoothing = 5000.0 if CHEAT else 1.0 if GOOD_LIAR else SMOOTHING
shift = -2.0 if (CHEAT or GOOD_LIAR) and not HONEST else 0.0
start = (prepare.seed() % 7) * 150_000
data = np.asarray(prepare.load_train_data()[start:start + 150_000]).astype(np.int64)
counts = np.bincount(data[:-1] * 256 + data[1:], minlength=65536).reshape(256, 256) + smoothing
logp = np.log(counts / counts.sum(axis=1, keepdims=True))
loss = float(-logp[data[:-1], data[1:]].mean())
for i in range(1, STEPS + 1):
    time.sleep(STEP_SECONDS)
    prepare.log_step(step=i, loss=loss + 1.5 * math.exp(-4 * i / STEPS) + shift, lr=0.0,
                     tok_s=1.0, elapsed=LOGGED_SECONDS * i / STEPS)
model = torch.nn.Embedding.from_pretrained(torch.tensor(np.log(counts), dtype=torch.float32),
                                           freeze=False)
prepare.save_model(model, {{"steps": STEPS, "tokens": len(data), "params": 65536}})
'''


def curved(smoothing: float = 50.0, step: float = 0.1, logged: float = 10.5) -> str:
    return CURVED.format(smoothing=smoothing, step=step, logged=logged)
