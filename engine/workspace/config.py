"""ratchet.toml: the workspace's settings, read with tomllib and checked key by key."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ratchet.engine.data import datasets, tokenizer
from ratchet.engine.workspace import agent_kinds as kinds
from ratchet.engine.workspace.config_text import render

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "ratchet.toml"
DEVICES = ("auto", "cpu", "cuda")
SOURCES = ("stdlib", "text", "parquet", "dataset")
COMPAT = ("", "autoresearch")
BACKENDS = ("local", "ray")
CLOCKS = ("auto", "cpu", "wall")
RULES = ("paired", "margin")


class ConfigError(Exception):
    """ratchet.toml is missing, unreadable or holds a bad value; the message is one line."""


@dataclass
class ExperimentConfig:
    budget_seconds: float = 20.0
    grace_seconds: float = 30.0
    clock: str = "auto"  # what the budget counts: wall, cpu (the trainer's CPU time), auto
    eval_timeout_seconds: float = 120.0
    device: str = "cpu"
    seed: int = 1337
    editable: list[str] = field(default_factory=lambda: ["train.py"])
    min_improvement: float = 0.001
    warm_start: bool = True  # start the next train.py process while the current one trains
    max_processes: int = 256  # in a trainer's or evaluator's process tree, sandbox included
    memory_limit_gb: float = 0.0  # resident memory of a trainer's tree; 0: 90% of the RAM
    compat: str = ""  # "autoresearch": drive that checkout's own train.py, metric self-reported


@dataclass
class DataConfig:
    source: str = "stdlib"
    paths: list[str] = field(default_factory=list)
    column: str = "text"
    val_percent: float = 5.0
    dataset: str = ""  # source "dataset": a name from ratchet.engine.data.datasets
    shards: int = 0  # training shards of the dataset; 0: its default
    tokenizer: str = "bytes"  # bytes (vocabulary 256) or bpe
    vocab_size: int = 8192  # of the bpe tokenizer
    key: str = ""
    eval_batch: int = 32
    eval_seq: int = 128
    eval_tokens: int = 262_144


@dataclass
class LoopConfig:
    baseline_seeds: int = 4
    noise_k: float = 2.0
    confirm: bool = True
    rule: str = "paired"  # paired (sequential, same seeds) or margin (docs/keep-rules.md)
    # stop a candidate that trails the best's run on its seed by a clear margin (paired rule
    # only: the margin rule has no run on the same seed to compare with, and ignores it)
    early_stop: bool = True
    max_tool_rounds: int = 20
    gpus: list[int] = field(default_factory=list)  # one worker per device; [] = one worker
    backend: str = "local"  # local (threads on this machine) or ray (tasks on a Ray cluster)
    ray_address: str = ""  # Ray cluster to join; "" starts or finds one as ray.init() does
    ray_resource: str = "GPU"  # the Ray resource each experiment takes one unit of


@dataclass
class ClaudeConfig:
    """[agent.claude]: the Claude agent's model, request limits and prices."""

    model: str = "claude-sonnet-4-6"
    max_tokens: int = 16000  # per response, thinking included
    thinking_budget: int = 4000  # extended thinking tokens per response; 0 turns it off
    timeout_seconds: float = 600.0
    max_retries: int = 6  # retries of one request (429, 5xx, 529, connection, cut stream)
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 60.0
    check_retries: int = 3  # refused finishes handed back to the model before giving up
    price_input: float = 3.0  # dollars per million tokens
    price_output: float = 15.0
    price_cache_read: float = 0.30
    price_cache_write: float = 3.75


@dataclass
class ClaudeCodeConfig:
    """[agent.claude-code]: how Ratchet runs the `claude` CLI for each proposal."""

    command: str = "claude"  # the CLI: a name on PATH or a path
    model: str = ""  # passed as --model; "" leaves the CLI's own default
    timeout_seconds: float = 900.0  # one run of the CLI; past it, it is stopped and we pause
    check_retries: int = 2  # refused edits handed back to it (a new run) before giving up
    max_budget_usd: float = 0.0  # per run, passed as --max-budget-usd; 0: no limit


@dataclass
class OfflineConfig:
    """[agent.offline]: none yet; the search is seeded by [experiment] seed."""


@dataclass
class AgentConfig:
    """[agent]: which kind proposes, plus one settings table per kind, named after it."""

    kind: str = kinds.DEFAULT
    claude: ClaudeConfig = field(default_factory=ClaudeConfig)
    claude_code: ClaudeCodeConfig = field(default_factory=ClaudeCodeConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _typed(section: str, name: str, value, expected):
    where = f"[{section}] {name}"
    if expected is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{where} must be a number, got {value!r}")
        return float(value)
    if expected is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if expected is int:
        _check(isinstance(value, int) and not isinstance(value, bool),
               f"{where} must be a whole number, got {value!r}")
        return value
    if expected == "list[int]":
        _check(isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                and v >= 0 for v in value),
               f"{where} must be a list of device numbers, e.g. [0, 1], got {value!r}")
        return list(value)
    if expected is str:
        _check(isinstance(value, str), f"{where} must be a string, got {value!r}")
        return value
    _check(isinstance(value, list) and all(isinstance(v, str) for v in value),
           f"{where} must be a list of strings, got {value!r}")
    return list(value)


_TYPES = {"float": float, "int": int, "str": str, "list[str]": list, "bool": bool,
          "list[int]": "list[int]"}


def from_dict(raw: dict) -> Config:
    config = Config()
    for section, value in raw.items():
        _check(hasattr(config, section), f"unknown section [{section}] in {CONFIG_NAME} "
                                         f"(known: experiment, data, agent, loop)")
        _check(isinstance(value, dict), f"[{section}] must be a table")
        if section == "agent":
            _read_agent(config.agent, value)
        else:
            _read_table(getattr(config, section), section, value)
    validate(config)
    return config


def _read_table(target, section: str, table: dict) -> None:
    known = {f.name: f for f in fields(target)}
    for name, item in table.items():
        _check(name in known, f"unknown key {name!r} in [{section}] "
                              f"(known: {', '.join(known) or 'none'})")
        setattr(target, name, _typed(section, name, item, _TYPES[str(known[name].type)]))


def _read_agent(agent: AgentConfig, table: dict) -> None:
    """`kind` and a table per kind ([agent.claude]). Files written before those tables hold the
    Claude settings straight under [agent]: such a key still counts for the kind that has it.
    A kind's table may also go by its attribute's name (claude_code), as `to_dict` writes it."""
    tables = {key: kind for kind in kinds.KINDS.values() for key in (kind.name, kind.field)}
    flat = {name: item for name, item in table.items() if name != "kind" and name not in tables}
    if "kind" in table:
        agent.kind = _typed("agent", "kind", table["kind"], str)
    for key, kind in tables.items():
        if key in table:
            _check(isinstance(table[key], dict), f"[agent.{kind.name}] must be a table")
            _read_table(getattr(agent, kind.field), f"agent.{kind.name}", table[key])
    for name, item in flat.items():
        # only the Claude agent's keys ever lived straight under [agent]
        owner = "claude" if name in {f.name for f in fields(agent.claude)} else None
        _check(owner is not None, f"unknown key {name!r} in [agent] (known: kind, "
                                  + ", ".join(f"[agent.{kind}]" for kind in kinds.NAMES) + ")")
        _check(name not in table.get(owner, {}),
               f"[agent] {name} is also set under [agent.{owner}]; keep that one")
        _read_table(getattr(agent, owner), "agent", {name: item})


def validate(config: Config) -> None:
    ex, data, agent = config.experiment, config.data, config.agent
    for name in ("budget_seconds", "grace_seconds", "eval_timeout_seconds", "memory_limit_gb"):
        _check(math.isfinite(getattr(ex, name)),
               f"[experiment] {name} must be a finite number, got {getattr(ex, name)}")
    _check(ex.budget_seconds > 0, f"[experiment] budget_seconds must be positive, "
                                  f"got {ex.budget_seconds}")
    _check(ex.grace_seconds >= 0, "[experiment] grace_seconds must not be negative")
    _check(ex.clock in CLOCKS, f"[experiment] clock must be one of {', '.join(CLOCKS)}, "
                               f"got {ex.clock!r}")
    _check(ex.eval_timeout_seconds > 0, "[experiment] eval_timeout_seconds must be positive")
    _check(ex.max_processes >= 8, "[experiment] max_processes must be at least 8")
    _check(ex.memory_limit_gb >= 0, "[experiment] memory_limit_gb must not be negative")
    _check(ex.device in DEVICES, f"[experiment] device must be one of {', '.join(DEVICES)}, "
                                 f"got {ex.device!r}")
    _check(bool(ex.editable), "[experiment] editable must name at least one file")
    for name in ex.editable:
        _check(not Path(name).is_absolute() and ".." not in Path(name).parts,
               f"[experiment] editable entries must be paths inside the workspace, got {name!r}")
        _check(os.path.normpath(name) not in ("prepare.py", CONFIG_NAME, "."),
               f"[experiment] editable must not include {name}: it is part of the harness")
    _check(ex.min_improvement >= 0, "[experiment] min_improvement must not be negative")
    _check(ex.compat in COMPAT, f"[experiment] compat must be \"autoresearch\" or empty, "
                                f"got {ex.compat!r}")
    _check(data.source in SOURCES, f"[data] source must be one of {', '.join(SOURCES)}, "
                                   f"got {data.source!r}")
    _check(data.source in ("stdlib", "dataset") or bool(data.paths),
           f"[data] source {data.source!r} needs paths")
    if data.source == "dataset":
        _check(data.dataset in datasets.NAMES, f"[data] dataset must be one of "
                                               f"{', '.join(datasets.NAMES)}, got {data.dataset!r}")
        available = len(datasets.get(data.dataset).train)
        _check(0 <= data.shards <= available,
               f"[data] shards must be from 1 to {available:,} for {data.dataset} (0: default), "
               f"got {data.shards}")
    _check(data.tokenizer in tokenizer.KINDS, f"[data] tokenizer must be bytes or bpe, "
                                              f"got {data.tokenizer!r}")
    low, high = tokenizer.MIN_VOCAB, tokenizer.MAX_VOCAB
    _check(data.tokenizer != "bpe" or low <= data.vocab_size <= high,
           f"[data] vocab_size must be from {tokenizer.MIN_VOCAB} to {tokenizer.MAX_VOCAB:,}, "
           f"got {data.vocab_size}")
    _check(0 < data.val_percent < 100, "[data] val_percent must be between 0 and 100")
    for name in ("eval_batch", "eval_seq", "eval_tokens"):
        _check(getattr(data, name) > 0, f"[data] {name} must be positive")
    _check(data.eval_tokens >= data.eval_seq, "[data] eval_tokens must be at least eval_seq")
    loop = config.loop
    _check(loop.baseline_seeds >= 1, "[loop] baseline_seeds must be at least 1")
    _check(loop.noise_k >= 0, "[loop] noise_k must not be negative")
    _check(loop.rule in RULES, f"[loop] rule must be one of {', '.join(RULES)}, "
                               f"got {loop.rule!r}")
    _check(loop.max_tool_rounds >= 1, "[loop] max_tool_rounds must be at least 1")
    _check(len(set(loop.gpus)) == len(loop.gpus), f"[loop] gpus lists a device twice: {loop.gpus}")
    _check(bool(loop.ray_resource), "[loop] ray_resource must not be empty")
    _check(loop.backend in BACKENDS, f"[loop] backend must be one of {', '.join(BACKENDS)}, "
                                     f"got {loop.backend!r}")
    _check(agent.kind in kinds.KINDS, f"[agent] kind must be one of {', '.join(kinds.NAMES)}, "
                                      f"got {agent.kind!r}")
    _validate_claude(agent.claude)
    _validate_claude_code(agent.claude_code)


def _validate_claude(claude: ClaudeConfig) -> None:
    where = "[agent.claude]"
    _check(bool(claude.model.strip()) and not any(c.isspace() for c in claude.model),
           f"{where} model must be a model name such as claude-sonnet-4-6, "
           f"got {claude.model!r}")
    _check(claude.max_tokens >= 256, f"{where} max_tokens must be at least 256")
    _check(claude.thinking_budget == 0 or 1024 <= claude.thinking_budget < claude.max_tokens,
           f"{where} thinking_budget must be 0 (off) or from 1024 to below max_tokens "
           f"({claude.max_tokens}), got {claude.thinking_budget}")
    _check(claude.timeout_seconds > 0, f"{where} timeout_seconds must be positive")
    _check(claude.max_retries >= 0, f"{where} max_retries must not be negative")
    _check(claude.retry_base_seconds >= 0
           and claude.retry_cap_seconds >= claude.retry_base_seconds,
           f"{where} retry_base_seconds must not be negative nor above retry_cap_seconds")
    _check(claude.check_retries >= 0, f"{where} check_retries must not be negative")
    for name in ("price_input", "price_output", "price_cache_read", "price_cache_write"):
        _check(getattr(claude, name) >= 0, f"{where} {name} must not be negative")


def _validate_claude_code(cli: ClaudeCodeConfig) -> None:
    where = "[agent.claude-code]"
    _check(bool(cli.command.strip()), f"{where} command must name the claude CLI, e.g. \"claude\"")
    _check(not any(c.isspace() for c in cli.model),
           f"{where} model must be a model name or empty, got {cli.model!r}")
    _check(math.isfinite(cli.timeout_seconds) and cli.timeout_seconds > 0,
           f"{where} timeout_seconds must be positive")
    _check(cli.check_retries >= 0, f"{where} check_retries must not be negative")
    _check(cli.max_budget_usd >= 0, f"{where} max_budget_usd must not be negative")


def load(workspace: Path) -> Config:
    path = workspace / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; create a workspace with `ratchet init`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return from_dict(raw)


def save(workspace: Path, config: Config) -> None:
    validate(config)
    (workspace / CONFIG_NAME).write_text(render(config), encoding="utf-8")
