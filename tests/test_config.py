"""Configs: defaults validate, CLI overrides reach the dataclass, bad input exits 2 with one line."""

import dataclasses
import json
import subprocess
import sys

import pytest

from common.config import CONFIGS, ConfigError, Exp1Config, Exp2Config, Exp3Config, parse


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config, Exp3Config])
def test_defaults_and_quick_preset_validate(cls):
    cls().validate()
    cfg = parse(cls, ["--quick"])
    assert cfg.quick and len(cfg.seeds) == 1


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config, Exp3Config])
def test_every_field_documented(cls):
    undocumented = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
    assert undocumented == []


def test_overrides_reach_the_dataclass():
    cfg = parse(Exp1Config, ["--lambda-spectral", "0.1", "--horizons", "5", "10", "20", "--quiet",
                             "--seeds", "3", "4"])
    assert cfg.lambda_spectral == 0.1 and cfg.horizons == [5, 10, 20] and cfg.quiet and cfg.seeds == [3, 4]


def test_explicit_flag_beats_quick_preset():
    cfg = parse(Exp1Config, ["--quick", "--train-steps", "7"])
    assert cfg.train_steps == 7 and cfg.horizons == Exp1Config().quick_overrides()["horizons"]


@pytest.mark.parametrize("cls, argv", [
    (Exp1Config, ["--horizons", "-5"]),
    (Exp1Config, ["--horizons", "0", "10"]),
    (Exp1Config, ["--lambda-spectral", "-1"]),
    (Exp1Config, ["--variants", "bogus"]),
    (Exp1Config, ["--dt-model", "0.033"]),
    (Exp2Config, ["--hf-noise-sigma", "0"]),
    (Exp2Config, ["--basin-grid-resolution", "-3"]),
    (Exp2Config, ["--hf-form", "magic"]),
    (Exp3Config, ["--env-id", "MiniGrid-Nope-v0"]),
    (Exp3Config, ["--coarse-stride", "0"]),
    (Exp3Config, ["--planning-horizons", "10", "-20"]),
    (Exp1Config, ["--seeds"]),
    (Exp1Config, ["--seeds", "100"]),  # the tuning seed is never a reported seed
    (Exp1Config, ["--device", "tpu"]),
    (Exp2Config, ["--train-steps", "1.5"]),
])
def test_bad_values_exit_2(cls, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(cls, argv, prog="prog")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prog: error:") and "\n" not in err


def test_unwritable_out_dir_is_rejected(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError):
        dataclasses.replace(Exp2Config(), out_dir=str(blocker / "sub")).validate()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "common.config", *args], capture_output=True, text=True)


def test_cli_through_a_shell_like_subprocess():
    bad = _cli("exp1", "--horizons", "-5")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["common.config exp1: error: horizons must be > 0, got [-5]"]

    typo = _cli("exp1", "--horizon", "5")
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1
    assert "did you mean --horizons" in typo.stderr

    helped = _cli("exp1", "--help")
    assert helped.returncode == 0
    assert "--lambda-spectral" in helped.stdout and "weight of the hinge" in helped.stdout

    good = _cli("exp2", "--quick", "--hf-noise-sigma", "0.08")
    assert good.returncode == 0
    assert json.loads(good.stdout)["hf_noise_sigma"] == 0.08


def test_config_table_is_complete():
    assert set(CONFIGS) == {"exp1", "exp2", "exp3"}
