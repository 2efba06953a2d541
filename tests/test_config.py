"""Configs: defaults validate, CLI overrides reach the dataclass, bad input exits 2 with one line."""

import dataclasses
import json
import subprocess
import sys

import pytest

from common.cli_parse import parse
from common.config import CONFIGS, Exp1Config, Exp2Config, Exp3Config
from common.fields import ConfigError, config_hash, fields_with_role
from common.output_folder import REPO_ROOT, RUNS_ROOT


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
    cfg = parse(Exp1Config, ["--lambda-spectral", "0.1", "--horizons", "5", "20", "50", "--quiet",
                             "--seeds", "3", "4"])
    assert cfg.lambda_spectral == 0.1 and cfg.horizons == [5, 20, 50] and cfg.quiet and cfg.seeds == [3, 4]


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
    assert bad.stderr.strip().splitlines() == ["common.config exp1: error: --horizons must be >= 1, got -5"]

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


# ----------------------------------------------------------------------------------------------
# field roles: checkpoint identity and run folders come from the declarations


def _changed(cfg, f: dataclasses.Field):
    """A different valid value for field f."""
    value, choices = getattr(cfg, f.name), f.metadata["choices"]
    if choices is not None:  # None when the field has a single allowed value
        others = [c for c in choices if c != (value[0] if isinstance(value, list) else value)]
        return None if not others else [others[0]] if isinstance(value, list) else others[0]
    if isinstance(value, bool):
        return not value
    if isinstance(value, list):
        return value[:-1] if len(value) > 1 else [value[0] + 1]
    if isinstance(value, str):
        return value + "x"
    return value + 1 if isinstance(value, int) else value * 2 + 0.01


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config, Exp3Config])
def test_every_field_declares_a_known_role(cls):
    roles = {f.name: f.metadata.get("role") for f in dataclasses.fields(cls)}
    assert set(roles.values()) <= {"model", "eval", "run"} and None not in roles.values()
    assert roles["num_threads"] == "model" and roles["device"] == "model"  # they change float rounding
    assert roles["out_dir"] == roles["quiet"] == roles["plots_only"] == "run"


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config])
def test_changing_any_model_field_changes_every_checkpoint_identity(cls):
    """Each experiment's own unit-identity function, fed the config with one field changed (Exp 3's
    units read fewer fields: the next test)."""
    from exp1_spectral_cliff.training import unit_config as exp1_unit
    from exp2_funnel_heatmap.training import ModelSpec, unit_config as exp2_unit
    unit = {Exp1Config: lambda c: exp1_unit(c, "helm", 0, 1),
            Exp2Config: lambda c: exp2_unit(ModelSpec("flat", 0, "flat"), c)}[cls]
    base = cls()
    for f in dataclasses.fields(cls):
        if _changed(base, f) is None:
            continue
        changed = dataclasses.replace(base, **{f.name: _changed(base, f)})
        same = unit(changed) == unit(base)
        assert same == (f.metadata["role"] != "model"), f"{f.name} ({f.metadata['role']}) vs the checkpoint identity"


def test_exp3_units_depend_on_what_they_read():
    """A training unit ignores the model fields its data source does not read (and only those); an
    evaluation unit changes with its own planner's fields and the episode protocol, not another's."""
    from exp3_planning_efficiency.evaluation import EPISODE_FIELDS, evaluation_unit
    from exp3_planning_efficiency.planners import PLANNERS
    from exp3_planning_efficiency.training import UNUSED_BY_SOURCE, unit_config
    base = Exp3Config()
    for f in dataclasses.fields(Exp3Config):
        changed = dataclasses.replace(base, **{f.name: _changed(base, f)}) if _changed(base, f) is not None else None
        if changed is None:
            continue
        if f.metadata["role"] == "model":
            for source in ("layouts", "fixed-100"):
                same = unit_config(changed, 0, source, ["hf"], "t/1") == unit_config(base, 0, source, ["hf"], "t/1")
                assert same == (f.name in UNUSED_BY_SOURCE[source.split("-")[0]]), (f.name, source)
        for planner, declared in PLANNERS.items():
            same = (evaluation_unit(changed, {}, "t/1", 0, planner, 1.0)
                    == evaluation_unit(base, {}, "t/1", 0, planner, 1.0))
            assert same == (f.name not in EPISODE_FIELDS + declared.fields), (f.name, planner)
    # the eval fields no unit reads: run bookkeeping, or read through the layouts / seed / scale of a unit
    read = set(EPISODE_FIELDS).union(*(p.fields for p in PLANNERS.values()))
    assert set(fields_with_role(Exp3Config, "eval")) - read == {
        "seeds", "tuning_seed", "quick", "tracks", "planners", "budget_scales", "num_tuning_layouts",
        "num_test_layouts", "num_fourrooms_layouts", "layout_sweep", "layout_sweep_seeds", "map_seeds", "map_episodes"}


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config, Exp3Config])
def test_run_folder_and_full_default_follow_the_roles(cls):
    base = cls()
    assert base.is_full_default() and base.output_dir() == REPO_ROOT / cls.experiment_folder
    for f in dataclasses.fields(cls):
        if _changed(base, f) is None:
            continue
        changed = dataclasses.replace(base, **{f.name: _changed(base, f)})
        computes = f.metadata["role"] in ("model", "eval")
        assert changed.is_full_default() == (not computes), f.name
        assert (config_hash(changed) != config_hash(base)) == computes, f.name
    quick = parse(cls, ["--quick"])
    assert quick.output_dir().parent == RUNS_ROOT / cls.experiment_folder
    assert quick.output_dir().name.endswith("-" + config_hash(quick))
    assert parse(cls, ["--quick", "--quiet"]).output_dir() == quick.output_dir()  # same config, same folder


def test_dry_run_prints_the_folder_and_writes_nothing(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse(Exp2Config, ["--quick", "--dry-run", "--out-dir", str(tmp_path / "x")], prog="p")
    assert exc.value.code == 0 and str(tmp_path / "x") in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
