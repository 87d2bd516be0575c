"""ratchet.toml as `ratchet init` writes it: every key with a comment on what it does.

A compat checkout's file leaves out [data]: its own prepare.py makes and reads its data."""

from __future__ import annotations

import json

from ratchet.engine.data import datasets
from ratchet.engine.workspace import agent_kinds as kinds


def toml(value) -> str:
    """A value as TOML text."""
    if isinstance(value, str):  # JSON string escapes are valid TOML basic-string escapes
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def render(config) -> str:
    """ratchet.toml text with a comment on every key, as `ratchet init` writes it, for a
    `config.Config` (config.py, which imports this module, saves with it)."""
    ex, agent, claude = config.experiment, config.agent, config.agent.claude

    loop = config.loop
    rows = [
        "# Ratchet workspace settings. train.py is what the agent edits; prepare.py is frozen.",
        "",
        "[experiment]",
        f"budget_seconds = {toml(ex.budget_seconds)}  # each run's whole allowance, from the "
        "start of train.py to the hand-off of its model (start-up, compilation, export included)",
        f"clock = {toml(ex.clock)}  # what the budget counts: wall, cpu (the trainer's CPU time "
        "over the cores, steady under load) or auto (cpu on a CPU device, wall on a GPU)",
        f"grace_seconds = {toml(ex.grace_seconds)}  # compat mode only (autoresearch's rule: its "
        "train.py trains for the budget, then has this long to evaluate and print its summary)",
        f"eval_timeout_seconds = {toml(ex.eval_timeout_seconds)}  # limit for the frozen "
        "evaluation",
        f"device = {toml(ex.device)}  # cpu, cuda or auto",
        f"seed = {toml(ex.seed)}",
        f"editable = {toml(ex.editable)}  # files the agent may change",
        f"min_improvement = {toml(ex.min_improvement)}  # val_bpb gain a change needs to be kept",
        f"warm_start = {toml(ex.warm_start)}  # start the next training process (torch imported) "
        "while one trains",
        f"max_processes = {toml(ex.max_processes)}  # a trainer or evaluator with more is killed",
        f"memory_limit_gb = {toml(ex.memory_limit_gb)}  # a trainer using more is killed; 0: 90% "
        "of the RAM",
        *([f"compat = {toml(ex.compat)}  # drive this checkout's own train.py; val_bpb is "
           "self-reported"] if ex.compat else []),
        # compat: the checkout's own prepare.py makes and reads its data, so [data] is left out
        # (unless set by hand: re-saving never drops a setting)
        *(_data(config) if not ex.compat or config.data != type(config.data)() else [""]),
        "[agent]",
        f"kind = {toml(agent.kind)}  # {' or '.join(kinds.NAMES)}; each kind's settings are "
        "under [agent.<kind>]",
        "",
        "[agent.claude]",
        f"model = {toml(claude.model)}  # Claude model",
        f"max_tokens = {toml(claude.max_tokens)}  # per response, thinking included",
        f"thinking_budget = {toml(claude.thinking_budget)}  # extended thinking tokens; 0 = off",
        f"timeout_seconds = {toml(claude.timeout_seconds)}  # limit for one API request",
        f"max_retries = {toml(claude.max_retries)}  # retries on 429, 5xx, 529, cut streams",
        f"retry_base_seconds = {toml(claude.retry_base_seconds)}  # first backoff, doubling",
        f"retry_cap_seconds = {toml(claude.retry_cap_seconds)}  # longest wait between retries",
        f"check_retries = {toml(claude.check_retries)}  # refused edits handed back to Claude",
        f"price_input = {toml(claude.price_input)}  # $ per million input tokens",
        f"price_output = {toml(claude.price_output)}  # $ per million output tokens",
        f"price_cache_read = {toml(claude.price_cache_read)}  # $ per million cache-read tokens",
        f"price_cache_write = {toml(claude.price_cache_write)}  # $ per million cache-write "
        "tokens",
        "",
        "[agent.claude-code]",
        f"command = {toml(agent.claude_code.command)}  # the claude CLI "
        "(npm install -g @anthropic-ai/claude-code)",
        f"model = {toml(agent.claude_code.model)}  # --model; \"\" = the CLI's default",
        f"timeout_seconds = {toml(agent.claude_code.timeout_seconds)}  # one run of the CLI",
        f"check_retries = {toml(agent.claude_code.check_retries)}  # refused edits handed back",
        f"max_budget_usd = {toml(agent.claude_code.max_budget_usd)}  # $ per run; 0 = no limit",
        "",
        "[loop]",
        f"baseline_seeds = {toml(loop.baseline_seeds)}  # baseline runs that measure seed noise",
        f"noise_k = {toml(loop.noise_k)}  # keep only gains above max(min_improvement, "
        "noise_k x seed spread)",
        f"confirm = {toml(loop.confirm)}  # margin rule: re-run a winning change with another "
        "seed first",
        f"rule = {toml(loop.rule)}  # paired: candidate and best on the same seeds, a run more "
        "for a close call or a win, up to baseline_seeds; margin: beat the best by noise_k x "
        "seed spread, then confirm",
        f"early_stop = {toml(loop.early_stop)}  # paired rule only: stop a candidate trailing "
        "the best's run on its seed by a clear margin",
        f"max_tool_rounds = {toml(loop.max_tool_rounds)}  # agent tool calls per proposal",
        f"gpus = {toml(loop.gpus)}  # devices to train on at once, one experiment each; [] = one",
        f"backend = {toml(loop.backend)}  # local, or ray for tasks on a Ray cluster",
        f"ray_address = {toml(loop.ray_address)}  # Ray cluster address for backend = \"ray\"",
        f"ray_resource = {toml(loop.ray_resource)}  # Ray resource one experiment takes a unit of",
        "",
    ]
    return "\n".join(rows)


def _data(config) -> list[str]:
    """The [data] table's lines, with the blank line before and after it."""
    data = config.data
    return [
        "",
        "[data]",
        f"source = {toml(data.source)}  # stdlib, text, parquet or dataset",
        f"paths = {toml(data.paths)}  # files or folders for text and parquet sources",
        f"column = {toml(data.column)}  # text column of parquet files",
        f"val_percent = {toml(data.val_percent)}  # share of documents held out for validation",
        f"dataset = {toml(data.dataset)}  # for source = \"dataset\": "
        f"{', '.join(datasets.NAMES)}",
        f"shards = {toml(data.shards)}  # training shards of the dataset to download; 0: default",
        f"tokenizer = {toml(data.tokenizer)}  # bytes, or bpe (trained on the training split)",
        f"vocab_size = {toml(data.vocab_size)}  # tokens of the bpe tokenizer",
        f"key = {toml(data.key)}  # content hash of the prepared corpus (set by ratchet prepare)",
        f"eval_batch = {toml(data.eval_batch)}  # evaluation windows per forward pass",
        f"eval_seq = {toml(data.eval_seq)}  # tokens of context per evaluation window",
        f"eval_tokens = {toml(data.eval_tokens)}  # validation bytes of text scored per "
        "experiment (the tokens that spell them, with bpe)",
        "",
    ]
