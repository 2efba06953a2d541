"""The README results section (`python -m common.report`): up to date, and rendered faithfully."""

import dataclasses
import json

import pytest

from common import report
from common.cli_parse import parse
from common.config import Exp2Config
from common.fields import fields_with_role
from common.output_folder import REPO_ROOT

README_TEMPLATE = "# Title\n\nintro\n\n## Results\n\n{begin}\nstale text\n{end}\n\n## After\nkept\n"


def test_readme_results_section_is_up_to_date():
    assert report.is_up_to_date(REPO_ROOT / "README.md"), (
        "README.md's results section differs from the metrics files: run `python -m common.report` and commit")


def _fake_repo(tmp_path, config: dict) -> dict:
    metrics = {
        "experiment": "exp2_funnel_heatmap", "config": config, "seeds": config["seeds"], "runtime_seconds": 12.34,
        "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "cpu_count": 2, "device": "cpu", "torch_threads": 1},
        "criteria": [{"name": "coverage", "target": "> 60 %", "measured": 96.18666, "passed": True},
                     {"name": "a | b ratio", "target": ">= 4x", "measured": None, "passed": False}],
    }
    results = tmp_path / "exp2_funnel_heatmap" / "results"
    results.mkdir(parents=True)
    (results / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "exp2_funnel_heatmap" / "plots").mkdir()
    for name in ("exp2_helm_energy.png", "exp2_flat_energy.png"):
        (tmp_path / "exp2_funnel_heatmap" / "plots" / name).write_bytes(b"\x89PNG")
    (tmp_path / "README.md").write_text(README_TEMPLATE.format(begin=report.BEGIN, end=report.END))
    return metrics


def test_render_from_fake_metrics(tmp_path, capsys):
    config = dataclasses.asdict(parse(Exp2Config, ["--quick", "--seeds", "5", "--train-steps", "7", "--quiet"]))
    _fake_repo(tmp_path, config)
    assert report.main(["--root", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert report.main(["--root", str(tmp_path)]) == 0
    assert report.main(["--root", str(tmp_path), "--check"]) == 0
    text = (tmp_path / "README.md").read_text()

    head, section, tail = report.split_readme(text)
    assert head == f"# Title\n\nintro\n\n## Results\n\n{report.BEGIN}"  # outside the markers: untouched
    assert tail == f"{report.END}\n\n## After\nkept\n"
    assert "stale text" not in section
    assert "- **Experiment 2: funnel heatmap**: 1/2 criteria pass; FAIL: a | b ratio." in section
    assert "(a `--quick` smoke run: numbers not meaningful)" in section
    assert "- **Experiment 1: spectral cliff**: not run yet." in section
    assert "Not run yet (no `exp3_planning_efficiency/results/metrics.json`)." in section
    assert "| coverage | > 60 % | 96.19 | PASS |" in section
    assert "| a \\| b ratio | >= 4x | n/a | FAIL |" in section
    assert "- Runtime: 12 s (seeds 5)" in section
    assert "- Machine: python 3.11.7, torch 2.13.0+cpu, CPUs 2, device cpu, torch threads 1" in section
    # non-default flags relative to the --quick preset; presentation flags (--quiet) left out
    assert "`cd exp2_funnel_heatmap && python run_experiment.py --quick --seeds 5 --train-steps 7`" in section
    assert section.index('src="exp2_funnel_heatmap/plots/exp2_flat_energy.png"') < section.index(
        'src="exp2_funnel_heatmap/plots/exp2_helm_energy.png"')

    # a changed metrics file makes the check fail again
    metrics_path = tmp_path / "exp2_funnel_heatmap" / "results" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["criteria"][0]["measured"] = 50.0
    metrics_path.write_text(json.dumps(metrics))
    assert not report.is_up_to_date(tmp_path / "README.md", tmp_path)


def test_missing_markers_is_an_error(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# no markers\n")
    assert report.main(["--root", str(tmp_path), "--check"]) == 2
    assert "RESULTS:BEGIN" in capsys.readouterr().err
    with pytest.raises(ValueError):
        report.split_readme(f"{report.END}\n{report.BEGIN}\n")


def _without_presentation(config: dict, config_cls=Exp2Config) -> dict:
    return {k: v for k, v in config.items() if k not in fields_with_role(config_cls, "run")}


@pytest.mark.parametrize("argv", [[], ["--quick"], ["--lr", "0.003", "--sweep-sigmas", "0.1", "0.2", "--hf-form",
                                                    "consistency", "--seeds", "3", "4", "--no-quick", "--device",
                                                    "cpu"]])
def test_command_flags_reproduce_the_config(argv):
    config = dataclasses.asdict(parse(Exp2Config, argv))
    flags = report.command_flags(json.loads(json.dumps(config)), Exp2Config)
    rebuilt = dataclasses.asdict(parse(Exp2Config, " ".join(flags).split()))
    assert _without_presentation(rebuilt) == _without_presentation(config)


@pytest.mark.parametrize("folder,title,config_cls", report.EXPERIMENTS)
def test_readme_command_reproduces_each_committed_config(folder, title, config_cls):
    metrics = report.load_metrics(REPO_ROOT, folder)
    if metrics is None:
        pytest.skip(f"{folder} has no results/metrics.json yet")
    flags = report.command_flags(metrics["config"], config_cls)
    if flags is None:
        pytest.skip(f"{folder}'s metrics.json was written by an older config class")
    rebuilt = dataclasses.asdict(parse(config_cls, " ".join(flags).split()))
    # a field added after the run keeps its default (as `--config` reads an older file): compare the saved fields
    saved = _without_presentation(metrics["config"], config_cls)
    assert {k: v for k, v in _without_presentation(rebuilt, config_cls).items() if k in saved} == saved
