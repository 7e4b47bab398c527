"""Configs are checked for sense and cross-references when loaded (issue 34): the error names the file, the key
and what is allowed, and the CLI prints it without a traceback."""

import shutil

import pytest
import yaml

from bioreview_assets.cli import main as cli
from bioreview_assets.config import loader
from bioreview_assets.config.loader import check_configs
from bioreview_assets.config.env import REPO_ROOT


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """A private copy of configs/ that a test may break; the loaders read it."""
    folder = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", folder)
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(folder))
    return folder


def edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def set_key(dotted, value):
    def change(data):
        *parents, last = dotted.split(".")
        for part in parents:
            data = data.setdefault(part, {})
        data[last] = value
    return change


@pytest.mark.parametrize("dotted, value, expected", [
    ("generation.max_new_tokens", 0, "generation.max_new_tokens: Input should be greater than or equal to 1"),
    ("generation.max_new_tokens", -5, "generation.max_new_tokens: Input should be greater than or equal to 1"),
    ("generation.batch_size", 0, "generation.batch_size: Input should be greater than or equal to 1"),
    ("training.lora.r", 0, "training.lora.r: Input should be greater than or equal to 1"),
    ("training.lora.dropout", 2, "training.lora.dropout: Input should be less than 1"),
    ("prompt.version", "v99", "prompt.version: unknown prompt version 'v99'; allowed: ['compact', 'v2']"),
    ("prompt.token_budget", 0, "prompt.token_budget: Input should be greater than 0"),
])
def test_model_config_out_of_range_names_file_and_key(configs, dotted, value, expected):
    edit(configs / "models" / "tiny-random.yaml", set_key(dotted, value))
    with pytest.raises(loader.ConfigError) as err:
        check_configs()
    assert "tiny-random.yaml" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("key, value, expected", [
    ("eval_max_articles", -1, "eval_max_articles: Input should be greater than or equal to 1"),
    ("baselines", ["bm25", "bm26"], "baselines: unknown 'bm26'; allowed: ['bm25', 'checklist', 'reviewers']"),
    ("default_matcher", "minlm", "default_matcher: unknown 'minlm'; allowed: ['minilm', 'minilm-strict']"),
    ("default_postprocess", "nope", "default_postprocess: unknown 'nope'; allowed: ['dedup', 'dedup-cap20',"),
    ("eval_splits", ["val", "tset"], "eval_splits: unknown 'tset'; allowed: ['test', 'train', 'val']"),
    ("matchers", ["minilm", "nosuch"], "matchers: no matchers/nosuch.yaml"),
])
def test_project_config_out_of_range_or_unknown_names_file_and_key(configs, key, value, expected):
    edit(configs / "project.yaml", set_key(key, value))
    with pytest.raises(loader.ConfigError) as err:
        check_configs()
    assert "project.yaml" in str(err.value) and expected in str(err.value)


def test_ensemble_cap_and_members_are_checked(configs):
    path = configs / "ensembles" / "embedded-union.yaml"
    edit(path, set_key("cap", -1))
    with pytest.raises(loader.ConfigError, match=r"embedded-union.yaml: cap: Input should be greater than or equal"):
        check_configs()
    edit(path, lambda data: data.update(cap=20, members=["smollm2-135m", "bm26"]))
    with pytest.raises(loader.ConfigError, match=r"embedded-union.yaml: members: unknown system 'bm26'"):
        check_configs()


def test_cli_prints_a_config_error_without_traceback(configs, capsys):
    edit(configs / "project.yaml", set_key("eval_max_articles", 0))
    assert cli.main(["report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bioreview report: error: invalid config ") and "project.yaml" in err
    assert "eval_max_articles" in err and "Traceback" not in err


@pytest.mark.parametrize("text, expected", [
    ("models: [tiny-random\n", r"project.yaml: not valid YAML: while parsing a flow sequence .*line 2"),
    ("- tiny-random\n- smollm2-135m\n", r"project.yaml: expected a mapping of keys at the top level, not a list"),
])
def test_a_project_yaml_that_does_not_parse_names_the_file_without_traceback(configs, capsys, text, expected):
    (configs / "project.yaml").write_text(text)
    with pytest.raises(loader.ConfigError, match=expected):
        check_configs()
    for command in (["report"], ["score", "--predictions", "none.jsonl"]):
        assert cli.main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"bioreview {command[0]}: error: invalid config ") and "Traceback" not in err
