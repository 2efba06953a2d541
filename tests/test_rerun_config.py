"""`--config PATH` reruns a saved run's config, `--tag NAME` names its run folder (issue 24, item 7)."""

import dataclasses
import importlib
import json
import subprocess
import sys

import pytest
import torch

import common.output_folder
from common.cli_parse import parse
from common.config import Exp1Config, Exp2Config, Exp3Config
from common.fields import config_hash, fields_with_role, identity
from common.output_folder import REPO_ROOT, RUNS_ROOT
from common.runs import write_results

SCRIPTS = {Exp1Config: ["exp1_spectral_cliff.run_experiment", "exp1_spectral_cliff.sweep_lambda"],
           Exp2Config: ["exp2_funnel_heatmap.run_experiment", "exp2_funnel_heatmap.sweep"],
           Exp3Config: ["exp3_planning_efficiency.run_experiment", "exp3_planning_efficiency.tune",
                        "exp3_planning_efficiency.sweep_layouts"]}


def _saved_run(cls, folder, *flags) -> tuple:
    """A config parsed from `flags` and saved in `folder` by the writer every experiment uses; (config, path)."""
    cfg = parse(cls, [*flags, "--out-dir", str(folder)])
    write_results(cfg, folder / "results", cls.experiment_folder, {}, [], 0.0, torch.device("cpu"))
    return cfg, folder / "results" / "config.json"


def _file(tmp_path, content) -> str:
    """A config file holding `content` (JSON unless it is a str)."""
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _refused(cls, argv, capsys) -> str:
    """Parsing `argv` exits 2 with one `prog: error:` line on stderr and nothing on stdout; that line."""
    with pytest.raises(SystemExit) as exc:
        parse(cls, argv, prog="prog")
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1 and lines[0].startswith("prog: error: "), captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize("cls, flags", [
    (Exp1Config, ["--quick", "--seeds", "4", "--lambda-spectral", "0.3", "--horizons", "5", "20", "50"]),
    (Exp2Config, ["--quick", "--seeds", "5", "6", "--lr", "0.003", "--hf-form", "consistency"]),
    (Exp3Config, ["--quick", "--planners", "cem", "random", "--cem-elite-frac", "0.2"]),
])
def test_a_saved_config_round_trips(cls, flags, tmp_path):
    saved, path = _saved_run(cls, tmp_path / "a", *flags, "--quiet", "--jobs", "1")
    rerun = parse(cls, ["--config", str(path), "--out-dir", str(tmp_path / "b")])
    assert identity(rerun, "model", "eval") == identity(saved, "model", "eval")
    assert config_hash(rerun) == config_hash(saved)
    run_fields = set(fields_with_role(cls, "run"))
    assert {k: v for k, v in dataclasses.asdict(rerun).items() if k not in run_fields} == {
        k: v for k, v in dataclasses.asdict(saved).items() if k not in run_fields}
    assert rerun.config == str(path) and rerun.out_dir == str(tmp_path / "b")
    assert not rerun.quiet  # a run field: from the command line, never from the file


def test_explicit_flags_override_the_saved_config(tmp_path):
    saved, path = _saved_run(Exp2Config, tmp_path / "a", "--quick", "--seeds", "5", "--train-steps", "30")
    rerun = parse(Exp2Config, ["--config", str(path), "--train-steps", "40", "--seeds", "7", "--out-dir",
                               str(tmp_path / "b")])
    assert rerun.train_steps == 40 and rerun.seeds == [7]
    assert rerun.quick and rerun.grid_resolution == saved.grid_resolution == Exp2Config().quick_overrides()[
        "grid_resolution"]


def test_run_fields_of_the_file_are_not_read(tmp_path):
    path = _file(tmp_path, {"out_dir": str(REPO_ROOT / "exp2_funnel_heatmap"), "tag": "old", "quiet": True,
                            "jobs": 999, "launcher": "slurm", "dry_run": True, "plots_only": True, "lr": 0.002})
    cfg = parse(Exp2Config, ["--config", path, "--out-dir", str(tmp_path / "b")])
    assert (cfg.out_dir, cfg.tag, cfg.quiet, cfg.jobs, cfg.launcher, cfg.dry_run, cfg.plots_only) == (
        str(tmp_path / "b"), "", False, 1, "inline", False, False)
    assert cfg.lr == 0.002 and cfg.train_steps == Exp2Config().train_steps  # a field the file lacks: its default


def test_a_rerun_never_writes_the_committed_findings(capsys):
    """The committed full default config, rerun without --out-dir, goes to a runs/ folder of the same hash."""
    path = REPO_ROOT / "exp2_funnel_heatmap" / "results" / "config.json"
    with pytest.raises(SystemExit) as exc:
        parse(Exp2Config, ["--config", str(path), "--dry-run"])
    out = capsys.readouterr().out
    saved = json.loads(path.read_text())
    rebuilt = dataclasses.replace(Exp2Config(), **{k: saved[k] for k in fields_with_role(Exp2Config, "model", "eval")})
    assert exc.value.code == 0 and "committed findings" not in out
    assert f"{RUNS_ROOT / 'exp2_funnel_heatmap'}/" in out and out.strip().endswith("-" + config_hash(rebuilt))


def test_a_rerun_never_writes_into_its_source_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common.output_folder, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(common.output_folder, "_RUN_FOLDERS", {})
    source = parse(Exp2Config, ["--quick", "--seeds", "3"]).output_dir()
    assert source.parent == tmp_path / "runs" / "exp2_funnel_heatmap"
    _, path = _saved_run(Exp2Config, source, "--quick", "--seeds", "3")
    assert "is the run it comes from" in _refused(Exp2Config, ["--config", str(path)], capsys)
    assert "is the run it comes from" in _refused(Exp2Config, ["--config", str(path), "--out-dir", str(source)], capsys)
    tagged = parse(Exp2Config, ["--config", str(path), "--tag", "again"])
    assert tagged.output_dir().parent == source.parent and tagged.output_dir().name.endswith(
        f"-{config_hash(tagged)}-again")


@pytest.mark.parametrize("content, says", [
    ({"lr": 0.001, "learning_rate": 0.1}, 'unknown field(s) "learning_rate"'),
    ({"dt": 0.01, "variants": ["flat"]}, 'unknown field(s) "dt", "variants"'),  # Exp 1's config
    ({"experiment": "exp2_funnel_heatmap", "config": {}}, 'unknown field(s) "experiment"'),  # a metrics.json
    ({"hidden_dim": 0}, "--hidden-dim must be >= 1, got 0"),
    ({"hidden_dim": "64"}, 'hidden_dim must be int, got "64"'),
    ({"hidden_dim": 64.0}, "hidden_dim must be int, got 64.0"),
    ({"lr": True}, "lr must be float, got true"),
    ({"lr": None}, "lr must be float, got null"),
    ({"lr": 1e400}, "--lr must be a finite number"),  # json reads 1e400 as inf
    ({"seeds": 3}, "seeds must be list[int], got 3"),
    ({"seeds": [1, 1]}, "--seeds lists 1 more than once"),
    ({"seeds": [10 ** 30]}, "seeds must be list[int]"),
    ({"hf_form": "magic"}, "--hf-form: unknown value 'magic'"),
    ({"sweep_sigmas": []}, "--sweep-sigmas must not be empty"),
    ({"tuning_seed": 0}, "tuning_seed 0 must differ from the reported seeds"),
    ([1, 2], "not a saved config (a JSON object of fields)"),
    ("{not json", "not JSON"),
])
def test_a_bad_saved_config_is_refused_before_any_work(content, says, tmp_path, capsys, repo_files):
    before = repo_files()
    line = _refused(Exp2Config, ["--config", _file(tmp_path, content), "--out-dir", str(tmp_path / "out")], capsys)
    assert says in line
    assert not (tmp_path / "out").exists() and repo_files() == before


@pytest.mark.parametrize("argv, says", [
    (["--config", "<tmp>/missing.json"], "No such file or directory"),
    (["--config", "<tmp>"], "Is a directory"),
    (["--config", "<saved>", "--quick"], "--quick / --no-quick with --config"),
    (["--config", "<saved>", "--no-quick"], "--quick / --no-quick with --config"),
    (["--tag", "a/b"], "--tag 'a/b': use 1 to 40 letters"),
    (["--tag", "../up"], "--tag '../up'"),
    (["--tag", ".hidden"], "--tag '.hidden'"),
    (["--tag", "two words"], "--tag 'two words'"),
    (["--tag", "x" * 41], "--tag 'xxxx"),
    (["--tag", "a\nb"], "--tag 'a\\nb'"),
    (["--tag", "demo", "--out-dir", "<tmp>/out"], "--tag names a folder under runs/"),
])
def test_bad_config_and_tag_flags_exit_2(argv, says, tmp_path, capsys):
    _, saved = _saved_run(Exp2Config, tmp_path / "a", "--quick")
    argv = [a.replace("<tmp>", str(tmp_path)).replace("<saved>", str(saved)) for a in argv]
    assert says in _refused(Exp2Config, argv, capsys)


@pytest.mark.parametrize("cls", [Exp1Config, Exp2Config, Exp3Config])
def test_the_tag_names_the_run_folder_and_changes_no_hash(cls, capsys):
    plain, tagged = parse(cls, ["--quick"]), parse(cls, ["--quick", "--tag", "demo-1.b_2"])
    assert config_hash(tagged) == config_hash(plain) and identity(tagged, "model", "eval") == identity(
        plain, "model", "eval")
    assert tagged.output_dir().parent == RUNS_ROOT / cls.experiment_folder
    assert tagged.output_dir().name.endswith(f"-{config_hash(plain)}-demo-1.b_2")
    with pytest.raises(SystemExit) as exc:
        parse(cls, ["--tag", "demo", "--dry-run"])  # the full default run, tagged: a runs/ folder, no findings
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "committed findings" not in out
    assert out.strip().endswith(f"-{config_hash(cls())}-demo") and f"{RUNS_ROOT / cls.experiment_folder}/" in out


@pytest.mark.parametrize("cls, module", [(cls, m) for cls, modules in SCRIPTS.items() for m in modules])
def test_every_script_takes_both_flags(cls, module, tmp_path, capsys, repo_files):
    """Each script that parses a config: a rerun of a saved quick config with a tag dry-runs into a tagged
    runs/ folder of the saved hash; a missing file is refused; neither writes anything."""
    saved, path = _saved_run(cls, tmp_path / "a", "--quick")
    main = importlib.import_module(module).main
    before = repo_files()
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(path), "--tag", "t", "--dry-run"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip().endswith(f"-{config_hash(saved)}-t")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(tmp_path / "missing.json")])
    assert exc.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert repo_files() == before


def test_help_and_a_subprocess_refusal():
    helped = subprocess.run([sys.executable, "-m", "common.config", "exp1", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--config CONFIG" in helped.stdout and "--tag TAG" in helped.stdout
    bad = subprocess.run([sys.executable, "-m", "common.config", "exp2", "--config", "/nonexistent/config.json"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "common.config exp2: error: --config /nonexistent/config.json: No such file or directory"]
