"""Experiments as Ray tasks, one GPU each, on a Ray cluster of any size.

Each task gets the candidate's tracked files (a few small text files), writes them into a
temporary checkout on its node, runs the experiment there exactly as a local worker does, and
returns the result as a dict. The engine stays the only writer of the event log and of git: it
collects results with `ray.wait`, and train logs and phases come back through a Ray queue.

A task whose worker process or node dies is reported as lost, so the scheduler records it and
runs it once more; Ray's own retries are off so that every attempt is in the log.

Each node needs the prepared corpus in its cache (`ratchet prepare` there, or a shared
RATCHET_CACHE_DIR); a node without it builds the stdlib corpus itself.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import git

from ratchet.engine.protocol import schema
from ratchet.engine.runner import experiment
from ratchet.engine.workers.backend import Backend, Hooks, Job, Outcome
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import Workspace

INSTALL_HINT = "install the ray extra: pip install 'ratchet[ray]'"


class RayUnavailable(Exception):
    """Ray is missing or its cluster cannot be used; the message is one line."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def run_task(files: dict[str, str], config: dict, exp: int, seed: int, updates) -> dict:
    """Runs on a Ray worker: train and evaluate the files in a private checkout."""
    import ray

    from ratchet.engine.workspace import config as configmod
    from ratchet.engine.workspace import layout

    cfg = configmod.from_dict(config)
    root = Path(tempfile.mkdtemp(prefix="ratchet-ray-"))
    try:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        ws = layout.Workspace(root)
        try:
            ws.tokens(cfg)
        except layout.WorkspaceError:  # a node that has not prepared this corpus yet
            layout.build_data(cfg.data, echo=lambda *_: None)

        def send(kind: str, payload) -> None:
            if updates is not None:
                updates.put_nowait((exp, kind, payload))

        result = experiment.run(ws, cfg, root / "out", seed=seed,
                                on_log=lambda record: send("log", record),
                                on_phase=lambda name: send("phase", name))
        data = result.to_json()
        data["train_log"] = result.train_log
        data["node"] = ray.util.get_node_ip_address()
        return data
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _result(data: dict) -> experiment.Result:
    known = {f.name for f in fields(experiment.Result)}
    return experiment.Result(**{k: v for k, v in data.items() if k in known})


class RayBackend(Backend):
    """One slot per unit of `resource` in the cluster (GPUs, or a custom resource)."""

    def __init__(self, ws: Workspace, config: Config, repo: git.Repo, hooks: Hooks,
                 address: str = "", resource: str = "GPU"):
        self.ray = ray = import_ray()
        self.config, self.repo, self.hooks = config, repo, hooks
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            try:
                ray.init(address=address or None, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f" at {address}" if address else ""
                raise RayUnavailable(f"cannot start or reach a Ray cluster{where}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        slots = int(ray.cluster_resources().get(resource, 0))
        if slots < 1:
            self.close()
            raise RayUnavailable(f"the Ray cluster has no {resource!r} resource to run "
                                 f"experiments on")
        self.workers = [f"ray-{i}" for i in range(slots)]
        need = {"num_gpus": 1} if resource == "GPU" else {"resources": {resource: 1}}
        self.remote = ray.remote(run_task).options(num_cpus=1, max_retries=0, **need)
        from ray.util.queue import Queue

        self.updates = Queue(actor_options={"num_cpus": 0})
        self.refs: dict = {}  # ObjectRef -> Job
        self.killed: set[int] = set()

    def _files(self, sha: str) -> dict[str, str]:
        tree = self.repo.commit(sha).tree
        return {blob.path: blob.data_stream.read().decode()
                for blob in tree.traverse() if blob.type == "blob"}

    def start(self, job: Job, worker: str) -> None:
        job.worker = worker
        ref = self.remote.remote(self._files(job.commit), self.config.to_dict(), job.exp,
                                 job.seed, self.updates)
        self.refs[ref] = job

    def kill(self) -> None:
        for ref, job in list(self.refs.items()):
            self.killed.add(job.exp)
            self.ray.cancel(ref, force=True)

    def stop(self, exp: int) -> bool:
        for ref, job in list(self.refs.items()):
            if job.exp == exp:
                self.killed.add(exp)
                self.ray.cancel(ref, force=True)
                return True
        return False

    def _drain(self) -> None:
        by_exp = {job.exp: job for job in self.refs.values()}
        while True:
            try:
                items = self.updates.get_nowait_batch(max(1, self.updates.qsize()))
            except Exception:  # noqa: BLE001 - ray.util.queue.Empty: nothing more
                return
            if not items:
                return
            for exp, kind, payload in items:
                job = by_exp.get(exp)
                if job is None:
                    continue
                if kind == "log":
                    self.hooks.on_log(job, payload)
                elif kind == "phase":
                    self.hooks.on_phase(job, payload)

    def wait(self, timeout: float) -> list[Outcome]:
        self._drain()
        if not self.refs:
            time.sleep(timeout)
            return []
        done, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if done:
            done, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        self._drain()  # the last logs before the results
        return [self._outcome(ref) for ref in done]

    def _outcome(self, ref) -> Outcome:
        ex = self.ray.exceptions
        job = self.refs.pop(ref)
        killed = job.exp in self.killed
        self.killed.discard(job.exp)
        try:
            data = self.ray.get(ref)
        except ex.TaskCancelledError:
            return Outcome(job, experiment.Result(status=schema.KILLED, seed=job.seed,
                                                  error="killed on request"))
        except ex.RayTaskError as exc:  # the task itself raised: this experiment's crash
            return Outcome(job, experiment.Result(
                status=schema.CRASHED, seed=job.seed, error=_first_line(exc),
                tail=str(exc)[-4000:]))
        except ex.RayError as exc:  # worker process or node gone
            if killed:
                return Outcome(job, experiment.Result(status=schema.KILLED, seed=job.seed,
                                                      error="killed on request"))
            return Outcome(job, experiment.Result(
                status=schema.LOST, seed=job.seed,
                error=f"Ray worker lost: {type(exc).__name__}: {_first_line(exc)}"), lost=True)
        return Outcome(job, _result(data))

    def close(self) -> None:
        if self.refs:
            self.kill()
            self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=30)
            self.refs.clear()
        if getattr(self, "updates", None) is not None:
            self.updates.shutdown()
            self.updates = None
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
