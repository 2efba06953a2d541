"""The launchers: inline and submitit's local executor run the same units to the same results, and a
failed unit is reported by name with its log (SLURM cannot run here; its executor is only built)."""

import dataclasses
import operator
from pathlib import Path

import pytest

from common.cli_parse import parse
from common.config import Exp3Config
from common.launch import Unit, UnitsFailed, executor_for, launch


def _cfg(launcher: str, jobs: int = 2):
    return dataclasses.replace(Exp3Config(), launcher=launcher, jobs=jobs, quiet=True)


UNITS = [Unit(f"power {n}", operator.pow, (n, 3)) for n in range(4)]


@pytest.mark.slow
def test_local_launcher_returns_what_inline_returns_in_order(tmp_path):
    assert launch(_cfg("inline"), UNITS, tmp_path) == launch(_cfg("local"), UNITS, tmp_path) == [0, 1, 8, 27]


@pytest.mark.slow
def test_a_failed_unit_is_reported_by_name_with_its_log_after_the_others_finish(tmp_path):
    units = [Unit("fine", operator.truediv, (1, 2)), Unit("divides by zero", operator.truediv, (1, 0))]
    with pytest.raises(UnitsFailed) as failed:
        launch(_cfg("local", jobs=1), units, tmp_path)
    [(name, error, log)] = failed.value.failures
    assert name == "divides by zero" and "ZeroDivisionError" in Path(log).read_text()
    assert "divides by zero" in str(failed.value) and log in str(failed.value)
    finished = [p for p in tmp_path.rglob("*_result.pkl")]
    assert len(finished) == 2  # both ran: the failure did not stop the fine unit


@pytest.mark.slow
def test_exp2_units_give_the_same_arrays_inline_and_local(tmp_path):
    """Exp 2 with one seed per unit: the local launcher's run equals the inline run bit for bit."""
    import numpy as np
    from exp2_funnel_heatmap import run_experiment
    flags = ["--quick", "--quiet", "--seeds", "0", "1", "--models-per-unit", "3", "--train-steps", "30"]
    for launcher in ("inline", "local"):
        assert run_experiment.main(flags + ["--launcher", launcher, "--jobs", "2", "--out-dir",
                                            str(tmp_path / launcher)]) == 0
    inline, local = (np.load(tmp_path / name / "results" / "exp2_arrays.npz") for name in ("inline", "local"))
    assert inline.files == local.files and all(np.array_equal(inline[k], local[k]) for k in inline.files)


@pytest.mark.slow
def test_exp1_variant_units_give_the_same_arrays_inline_and_local(tmp_path):
    import numpy as np
    from exp1_spectral_cliff import run_experiment
    flags = ["--quick", "--quiet", "--train-steps", "20", "--variants", "flat", "helm"]
    for launcher in ("inline", "local"):
        assert run_experiment.main(flags + ["--launcher", launcher, "--jobs", "2", "--out-dir",
                                            str(tmp_path / launcher)]) == 0
    inline, local = (np.load(tmp_path / name / "results" / "exp1_arrays.npz") for name in ("inline", "local"))
    timings = [k for k in inline.files if "seconds" in k]
    assert inline.files == local.files and all(np.array_equal(inline[k], local[k]) for k in inline.files
                                               if k not in timings)


def test_slurm_executor_takes_the_flags(tmp_path, monkeypatch):
    """The SLURM submission script the flags produce (no SLURM here: submitit's srun check is bypassed)."""
    import submitit.slurm.slurm as slurm
    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    cfg = dataclasses.replace(_cfg("slurm", jobs=20), slurm_partition="gpu", slurm_time_min=30, slurm_gpus_per_task=1)
    executor = executor_for(cfg, tmp_path)._executor
    script = executor._make_submission_file_text("python -c pass", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=30", "#SBATCH --gpus-per-node=1",
                 f"#SBATCH --cpus-per-task={cfg.num_threads}"):
        assert line in script, line
    assert executor.parameters["array_parallelism"] == 20


def test_slurm_launcher_without_slurm_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(Exp3Config, ["--quick", "--launcher", "slurm"], prog="p")
    assert exit_info.value.code == 2 and "sbatch" in capsys.readouterr().err


def test_launcher_flags_are_validated():
    assert parse(Exp3Config, ["--quick", "--launcher", "local", "--jobs", "2"]).launcher == "local"
    with pytest.raises(SystemExit) as exit_info:
        parse(Exp3Config, ["--quick", "--launcher", "ray"])
    assert exit_info.value.code == 2
