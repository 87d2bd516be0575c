"""ratchet.toml: what `ratchet init` writes reads back the same, and bad values are one-line
errors naming the key."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace.config import ConfigError


def _write(tmp_path, text: str):
    (tmp_path / configmod.CONFIG_NAME).write_text(text)
    return tmp_path


def _changed_config() -> configmod.Config:
    """A config where every value differs from the default, strings included awkward ones."""
    config = configmod.Config()
    ex, data, agent, claude = config.experiment, config.data, config.agent, config.agent.claude
    ex.budget_seconds, ex.grace_seconds, ex.eval_timeout_seconds = 123.5, 0.0, 7.25
    ex.device, ex.seed, ex.min_improvement = "cuda", 42, 0.0005
    ex.editable = ["train.py", "model/extra.py"]
    ex.compat, ex.warm_start = "autoresearch", False
    ex.max_processes, ex.memory_limit_gb, ex.clock = 64, 3.5, "wall"
    data.source, data.column, data.val_percent = "parquet", "body \"quoted\"", 12.5
    data.paths = ["/data/shard 1.parquet", "C:\\data\\shard2.parquet"]
    data.key, data.eval_batch, data.eval_seq, data.eval_tokens = "abc123", 4, 512, 4096
    data.dataset, data.shards, data.tokenizer, data.vocab_size = "tinystories", 2, "bpe", 4096
    agent.kind, claude.model = "claude", "claude-opus-4"
    claude.max_tokens, claude.thinking_budget, claude.timeout_seconds = 8192, 0, 90.5
    claude.max_retries, claude.retry_base_seconds, claude.retry_cap_seconds = 2, 0.5, 9.0
    claude.check_retries, claude.price_input, claude.price_output = 1, 15.0, 75.0
    claude.price_cache_read, claude.price_cache_write = 1.5, 18.75
    cli = agent.claude_code
    cli.command, cli.model, cli.timeout_seconds = "/opt/claude code/bin/claude", "opus", 60.0
    cli.check_retries, cli.max_budget_usd = 0, 2.5
    return config


def test_render_load_round_trip_preserves_every_value(tmp_path):
    """`ratchet init` writes render(); every setting must come back unchanged on load."""
    config = _changed_config()
    default = configmod.Config()
    for section in ("experiment", "data", "agent", "agent.claude", "agent.claude_code"):
        table, base = config, default
        for part in section.split("."):
            table, base = getattr(table, part), getattr(base, part)
        for f in fields(table):
            if f.name in ("claude", "claude_code", "offline"):  # the kinds' own tables, below
                continue
            assert getattr(table, f.name) != getattr(base, f.name), \
                f"{section}.{f.name} not exercised"

    configmod.save(tmp_path, config)
    loaded = configmod.load(tmp_path)
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    # and writing it again gives the same text, so re-saving does not dirty the workspace
    assert configmod.render(loaded) == (tmp_path / configmod.CONFIG_NAME).read_text()


def test_default_config_round_trips(tmp_path):
    """The defaults themselves are valid and survive a save and load."""
    configmod.save(tmp_path, configmod.Config())
    assert configmod.load(tmp_path) == configmod.Config()


def test_partial_file_keeps_defaults_and_accepts_whole_numbers(tmp_path):
    """Users may write only the keys they change, and `60` for a number of seconds."""
    loaded = configmod.load(_write(tmp_path, "[experiment]\nbudget_seconds = 60\n"))
    assert loaded.experiment.budget_seconds == 60.0
    assert isinstance(loaded.experiment.budget_seconds, float)
    expected = configmod.Config()
    expected.experiment.budget_seconds = 60.0
    assert loaded == expected


@pytest.mark.parametrize(("text", "names"), [
    ("[experiments]\nbudget_seconds = 5\n", "experiments"),
    ("[experiment]\nbudget = 5\n", "budget"),
    ("[data]\nsorce = \"text\"\n", "sorce"),
    ("[experiment]\nbudget_seconds = \"fast\"\n", "budget_seconds"),
    ("[experiment]\nbudget_seconds = true\n", "budget_seconds"),
    ("[experiment]\nseed = 1.5\n", "seed"),
    ("[experiment]\nseed = false\n", "seed"),
    ("[experiment]\neditable = \"train.py\"\n", "editable"),
    ("[experiment]\neditable = [\"train.py\", 3]\n", "editable"),
    ("[agent.claude]\nmodel = 4\n", "model"),
    ("[agent]\nmodel = 4\n", "model"),
    ("experiment = 3\n", "experiment"),
    ("[experiment]\ndevice = \"tpu\"\n", "device"),
    ("[experiment]\nclock = \"gpu\"\n", "[experiment] clock must be one of auto, cpu, wall"),
    ("[loop]\nrule = \"lower\"\n", "[loop] rule must be one of paired, margin"),
    ("[experiment]\ndevice = \"CUDA\"\n", "device"),
    ("[agent]\nkind = \"gpt\"\n", "kind"),
    ("[agent.claude]\nmodel = \"\"\n", "[agent.claude] model"),
    ("[agent.claude]\nthinking_budget = 100\n", "[agent.claude] thinking_budget"),
    ("[agent.claude]\nmax_tokens = 200\n", "[agent.claude] max_tokens must be at least 256"),
    ("[agent.claude]\nmax_tokens = 2000\nthinking_budget = 2000\n", "thinking_budget"),
    ("[agent.claude]\nprice_output = -15\n", "[agent.claude] price_output"),
    ("[agent.claude]\nprice_input = \"3\"\n", "[agent.claude] price_input"),
    ("[agent.claude]\nretry_base_seconds = 90\n", "retry_base_seconds"),
    ("[agent.claude]\nmax_retries = -1\n", "max_retries"),
    ("[agent.claude]\nmaxtokens = 300\n", "maxtokens"),
    ("[agent.offline]\nmodel = \"x\"\n", "[agent.offline]"),
    ("[agent]\nclaude = 3\n", "[agent.claude] must be a table"),
    ("[agent]\nmodle = \"x\"\n", "modle"),
    ("[agent]\nmax_tokens = 200\n", "[agent.claude] max_tokens"),  # the old flat layout
    ("[agent]\nmodel = \"a\"\n[agent.claude]\nmodel = \"b\"\n", "model is also set under"),
    ("[experiment]\neditable = [\"train.py\", \"prepare.py\"]\n", "editable"),
    ("[experiment]\neditable = [\"ratchet.toml\"]\n", "editable"),
    ("[experiment]\neditable = [\"/etc/passwd\"]\n", "editable"),
    ("[experiment]\neditable = [\"../outside.py\"]\n", "editable"),
    ("[experiment]\neditable = []\n", "editable"),
    ("[experiment]\nbudget_seconds = 0\n", "budget_seconds"),
    ("[experiment]\nbudget_seconds = -3.5\n", "budget_seconds"),
    ("[experiment]\nbudget_seconds = nan\n", "budget_seconds"),
    ("[experiment]\neval_timeout_seconds = 0\n", "eval_timeout_seconds"),
    ("[experiment]\ngrace_seconds = -1\n", "grace_seconds"),
    ("[experiment]\nmin_improvement = -0.1\n", "min_improvement"),
    ("[data]\nsource = \"csv\"\n", "source"),
    ("[data]\nsource = \"text\"\n", "source"),
    ("[data]\nval_percent = 100\n", "val_percent"),
    ("[data]\neval_seq = 0\n", "eval_seq"),
    ("[data]\neval_tokens = 10\n", "eval_tokens"),
    ("[data]\nsource = \"dataset\"\ndataset = \"fineweb\"\n", "[data] dataset must be one of"),
    ("[data]\nsource = \"dataset\"\ndataset = \"tinystories\"\nshards = 5\n", "[data] shards"),
    ("[data]\ntokenizer = \"wordpiece\"\n", "[data] tokenizer must be bytes or bpe"),
    ("[data]\ntokenizer = \"bpe\"\nvocab_size = 100000\n", "[data] vocab_size"),
])
def test_bad_values_are_one_line_errors_naming_the_key(tmp_path, text, names):
    """Every mistake in ratchet.toml is a ConfigError the CLI can print as one line that tells
    the user which key to fix."""
    with pytest.raises(ConfigError) as info:
        configmod.load(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert names in message


def test_save_refuses_invalid_config(tmp_path):
    """save() validates, so a bad config never reaches the file."""
    config = configmod.Config()
    config.experiment.device = "tpu"
    with pytest.raises(ConfigError, match="device"):
        configmod.save(tmp_path, config)
    assert not (tmp_path / configmod.CONFIG_NAME).exists()


def test_invalid_toml_is_a_config_error(tmp_path):
    """A syntax error is reported with the file, not as a tomllib traceback."""
    path = _write(tmp_path, "[experiment\nbudget_seconds = 5\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        configmod.load(path)
    assert "\n" not in str(info.value)
    assert configmod.CONFIG_NAME in str(info.value)


def test_missing_file_points_to_ratchet_init(tmp_path):
    """Outside a workspace the error tells the user how to make one."""
    with pytest.raises(ConfigError, match="ratchet init") as info:
        configmod.load(tmp_path)
    assert "\n" not in str(info.value)


def test_agent_settings_live_in_a_table_per_kind(tmp_path):
    """`[agent] kind` picks the agent; its own settings sit under [agent.<kind>]."""
    text = configmod.render(configmod.Config())
    assert "\n[agent]\nkind = \"offline\"" in text and "\n[agent.claude]\nmodel = " in text
    agent_table = text.split("\n[agent]\n")[1].split("\n[")[0]
    assert [line.split(" =")[0] for line in agent_table.splitlines() if line] == ["kind"]
    loaded = configmod.load(_write(tmp_path, "[agent]\nkind = \"claude\"\n\n[agent.claude]\n"
                                             "model = \"claude-opus-4\"\nmax_tokens = 8192\n\n"
                                             "[agent.offline]\n"))
    expected = configmod.Config()
    expected.agent.kind = "claude"
    expected.agent.claude.model, expected.agent.claude.max_tokens = "claude-opus-4", 8192
    assert loaded == expected


def test_old_flat_agent_settings_still_load(tmp_path):
    """Workspaces made before [agent.claude] existed keep the Claude keys under [agent]."""
    loaded = configmod.load(_write(tmp_path, "[agent]\nkind = \"claude\"\n"
                                             "model = \"claude-opus-4\"\nthinking_budget = 0\n"
                                             "price_input = 15\n"))
    claude = loaded.agent.claude
    assert loaded.agent.kind == "claude" and claude.model == "claude-opus-4"
    assert claude.thinking_budget == 0 and claude.price_input == 15.0
    assert claude.max_tokens == configmod.ClaudeConfig().max_tokens
    # and saving such a workspace writes the new layout with the same values
    configmod.save(tmp_path, loaded)
    assert configmod.load(tmp_path) == loaded
    assert "[agent.claude]\nmodel = \"claude-opus-4\"" in (tmp_path / configmod.CONFIG_NAME) \
        .read_text()


@pytest.mark.parametrize("line, key", [
    ("budget_seconds = inf", "budget_seconds must be a finite number"),
    ("grace_seconds = inf", "grace_seconds must be a finite number"),
    ("eval_timeout_seconds = nan", "eval_timeout_seconds must be a finite number"),
    ("max_processes = 2", "max_processes must be at least 8"),
])
def test_unbounded_or_tiny_limits_are_refused(tmp_path, line, key):
    (tmp_path / configmod.CONFIG_NAME).write_text(f"[experiment]\n{line}\n")
    with pytest.raises(configmod.ConfigError, match=key):
        configmod.load(tmp_path)


def test_claude_code_settings_are_read_from_their_table(tmp_path):
    loaded = configmod.load(_write(tmp_path, '[agent]\nkind = "claude-code"\n'
                                             '[agent.claude-code]\ncommand = "/x/claude"\n'
                                             'timeout_seconds = 30\n'))
    assert loaded.agent.kind == "claude-code"
    assert loaded.agent.claude_code.command == "/x/claude"
    assert loaded.agent.claude_code.timeout_seconds == 30.0
    with pytest.raises(ConfigError, match=r"\[agent.claude-code\] timeout_seconds must be "
                                          "positive"):
        configmod.load(_write(tmp_path, "[agent.claude-code]\ntimeout_seconds = 0\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'tools' in \[agent.claude-code\]"):
        configmod.load(_write(tmp_path, '[agent.claude-code]\ntools = "Bash"\n'))


def test_a_config_as_the_log_records_it_reads_back():
    """session_start records `to_dict()`, where [agent.claude-code] is `claude_code`."""
    config = _changed_config()
    assert configmod.from_dict(config.to_dict()) == config
