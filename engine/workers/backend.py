"""Workers run experiments; the engine hands each a job and collects the results.

A backend owns a fixed set of workers (one per GPU here, or slots on a Ray cluster). The engine
thread calls `start`, `kill` and `wait`; everything that writes git or the event log stays on
the engine's side, the workers only train and evaluate. This module is the interface; `pool`
holds the local backend and picks one, `ray_backend` the one on a Ray cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ratchet.engine.runner.result import Result


@dataclass
class Job:
    """One experiment to run: a commit, a seed, and why the engine wants it."""

    exp: int
    kind: str  # baseline | candidate | confirm
    commit: str
    seed: int
    description: str
    worker: str = ""  # set when a worker takes it
    candidate: Any = None  # the scheduler's candidate, for candidate and confirm runs
    retry_of: int | None = None  # the experiment whose worker was lost


@dataclass
class Outcome:
    job: Job
    result: Result
    lost: bool = False  # the worker died under the job (process or node lost): may run again


@dataclass
class Hooks:
    """How workers report progress; called on worker threads (the event log is thread-safe)."""

    on_log: Callable[[Job, dict], None]
    on_phase: Callable[[Job, str], None]


class Backend(ABC):
    workers: list[str]  # labels, as events name them in their `worker` field

    @abstractmethod
    def start(self, job: Job, worker: str) -> None:
        """Begin running the job on a free worker; returns at once."""

    @abstractmethod
    def kill(self) -> None:
        """Stop every running experiment; each still comes back from `wait`, as killed."""

    def stop(self, exp: int) -> bool:
        """Stop one running experiment (it comes back from `wait` as killed); False where this
        backend cannot stop one alone, or it is not running. Any thread may call it."""
        return False

    @abstractmethod
    def wait(self, timeout: float) -> list[Outcome]:
        """Finished jobs, waiting up to `timeout` seconds for the first."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing
        """Release what the backend holds; no job is running any more."""
