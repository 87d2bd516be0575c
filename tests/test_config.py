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
    ex, data, agent = config.experiment, config.data, config.agent
    ex.budget_seconds, ex.grace_seconds, ex.eval_timeout_seconds = 123.5, 0.0, 7.25
    ex.device, ex.seed, ex.min_improvement = "cuda", 42, 0.0005
    ex.editable = ["train.py", "model/extra.py"]
    ex.compat, ex.warm_start = "autoresearch", False
    data.source, data.column, data.val_percent = "parquet", "body \"quoted\"", 12.5
    data.paths = ["/data/shard 1.parquet", "C:\\data\\shard2.parquet"]
    data.key, data.eval_batch, data.eval_seq, data.eval_tokens = "abc123", 4, 512, 4096
    agent.kind, agent.model = "claude", "claude-opus-4"
    agent.max_tokens, agent.thinking_budget, agent.timeout_seconds = 8192, 0, 90.5
    agent.max_retries, agent.retry_base_seconds, agent.retry_cap_seconds = 2, 0.5, 9.0
    agent.check_retries, agent.price_input, agent.price_output = 1, 15.0, 75.0
    agent.price_cache_read, agent.price_cache_write = 1.5, 18.75
    return config


def test_render_load_round_trip_preserves_every_value(tmp_path):
    """`ratchet init` writes render(); every setting must come back unchanged on load."""
    config = _changed_config()
    default = configmod.Config()
    for section in ("experiment", "data", "agent"):
        for f in fields(getattr(config, section)):
            assert getattr(getattr(config, section), f.name) != \
                getattr(getattr(default, section), f.name), f"{section}.{f.name} not exercised"

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
    ("[agent]\nmodel = 4\n", "model"),
    ("experiment = 3\n", "experiment"),
    ("[experiment]\ndevice = \"tpu\"\n", "device"),
    ("[experiment]\ndevice = \"CUDA\"\n", "device"),
    ("[agent]\nkind = \"gpt\"\n", "kind"),
    ("[agent]\nmodel = \"\"\n", "model"),
    ("[agent]\nthinking_budget = 100\n", "thinking_budget"),
    ("[agent]\nmax_tokens = 2000\nthinking_budget = 2000\n", "thinking_budget"),
    ("[agent]\nprice_output = -15\n", "price_output"),
    ("[agent]\nprice_input = \"3\"\n", "price_input"),
    ("[agent]\nretry_base_seconds = 90\n", "retry_base_seconds"),
    ("[agent]\nmax_retries = -1\n", "max_retries"),
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
