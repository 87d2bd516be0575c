"""The local backend, one worker thread per device on this machine, and the choice of backend
([loop] backend). The interface every backend implements, and the jobs and outcomes they pass,
are in `backend`."""

from __future__ import annotations

import queue
import shutil
import threading
from pathlib import Path

import git

from ratchet.engine.protocol import schema
from ratchet.engine.runner import experiment
from ratchet.engine.runner.warm_trainer import WarmTrainer
from ratchet.engine.workers import ray_backend
from ratchet.engine.workers.backend import Backend, Hooks, Job, Outcome
from ratchet.engine.workspace import gitrepo
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import Workspace


class LocalBackend(Backend):
    """One thread per device on this machine, each training in its own git worktree.

    With devices, the children see only their own GPU (CUDA_VISIBLE_DEVICES); without, one
    worker trains on the configured device.
    """

    def __init__(self, ws: Workspace, config: Config, repo: git.Repo, session_dir: Path,
                 devices: list[int], hooks: Hooks):
        self.ws, self.config, self.repo, self.dir, self.hooks = ws, config, repo, session_dir, hooks
        self.devices = [str(d) for d in devices]
        self.workers = self.devices or ["0"]
        self.trees: dict[str, git.Repo] = {}
        self.kills: dict[int, threading.Event] = {}
        self.done: queue.Queue[Outcome] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.warm: dict[str, WarmTrainer] = {}  # each worker's next training process, started
        self.prestarted = 0

    def tree_path(self, worker: str) -> Path:
        return self.dir / "worktrees" / worker

    def start(self, job: Job, worker: str) -> None:
        job.worker = worker
        if worker in self.trees:  # git on the engine thread only
            gitrepo.checkout_detached(self.trees[worker], job.commit)
        else:
            self.trees[worker] = gitrepo.worktree(self.repo, self.tree_path(worker), job.commit)
        kill = self.kills[job.exp] = threading.Event()
        env = {"CUDA_VISIBLE_DEVICES": worker} if self.devices else {}
        warm = self.warm.pop(worker, None)
        thread = threading.Thread(target=self._run, args=(job, env, kill, warm), daemon=True,
                                  name=f"worker-{worker}")
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()
        self._prestart(worker, env)

    def _prestart(self, worker: str, env: dict[str, str]) -> None:
        """Start this worker's next training process now, while the current one trains.

        On the engine thread: the sandbox ties a child's life to the thread that started it,
        and a job's thread ends with its job.
        """
        self.prestarted += 1
        stage = self.dir / "warm" / f"{worker}-{self.prestarted}"
        try:
            warm = experiment.prestart(Workspace(self.tree_path(worker)), self.config, stage, env)
        except OSError:
            return  # the next experiment simply starts cold
        if warm is not None:
            self.warm[worker] = warm

    def _run(self, job: Job, env: dict[str, str], kill: threading.Event,
             warm: WarmTrainer | None) -> None:
        try:
            result = experiment.run(
                Workspace(self.tree_path(job.worker)), self.config,
                self.dir / f"exp-{job.exp:04d}", seed=job.seed,
                on_log=lambda record: self.hooks.on_log(job, record), should_kill=kill.is_set,
                on_phase=lambda name: self.hooks.on_phase(job, name), env=env, warm=warm)
        except Exception as exc:  # the runner's own failure is this experiment's crash
            result = experiment.Result(status=schema.CRASHED, seed=job.seed,
                                       error=f"worker failed: {type(exc).__name__}: {exc}")
        self.done.put(Outcome(job, result))

    def kill(self) -> None:
        for event in list(self.kills.values()):
            event.set()

    def stop(self, exp: int) -> bool:
        kill = self.kills.get(exp)
        if kill is not None:
            kill.set()
        return kill is not None

    def wait(self, timeout: float) -> list[Outcome]:
        try:
            found = [self.done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                found.append(self.done.get_nowait())
            except queue.Empty:
                break
        for outcome in found:
            self.kills.pop(outcome.job.exp, None)
        return found

    def close(self) -> None:
        self.kill()
        for warm in self.warm.values():
            warm.close()
        self.warm.clear()
        for thread in self.threads:
            thread.join(timeout=30)
        shutil.rmtree(self.dir / "warm", ignore_errors=True)
        for worker in self.trees:
            gitrepo.remove_worktree(self.repo, self.tree_path(worker))
        self.trees.clear()


def create(ws: Workspace, config: Config, repo: git.Repo, session_dir: Path,
           hooks: Hooks) -> Backend:
    """The backend the config asks for ([loop] backend, gpus, ray_address)."""
    loop = config.loop
    if loop.backend == "ray":
        return ray_backend.RayBackend(ws, config, repo, hooks, address=loop.ray_address,
                                      resource=loop.ray_resource)
    return LocalBackend(ws, config, repo, session_dir, loop.gpus, hooks)
