"""Reliability audit of the three experiments on tiny configs (issue 6).

- interrupt and resume: SIGTERM / SIGKILL after the first checkpoint, rerun, same metrics;
- determinism: the same seed twice gives identical metrics;
- divergence: a model pushed to NaN by a huge learning rate is recorded as diverged, the run finishes;
- bad input: an unwritable output folder exits 2 with one stderr line and writes nothing;
- output policy: a folder holding another config's results is refused (exit 2, nothing moves), the
  same config resumes in place;
- faults after validation (a corrupted saved file, a full disk, Ctrl-C, a folder where a plot goes):
  one line naming the file and the remedy, exit 1 (130 for Ctrl-C), nothing published, and the same
  command then resumes.

Every run writes into tmp_path (`--out-dir`). Most runs are in-process (`main(argv)`) to save the
~3 s of interpreter + torch start-up; the interrupted runs and the output-policy run go through the
command line. Timing keys (`environment` and every key containing `seconds`) and `out_dir`
are left out of metric comparisons; everything else must be identical.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from common import runs
from common.cli import naming
from common.config import CONFIGS
from common.fields import fields_with_role
from common.output_folder import REPO_ROOT
from common.runs import read_checkpoint


@dataclass(frozen=True)
class Exp:
    folder: str
    tiny: list[str]  # --quick plus flags that shrink a run to a few seconds
    first_checkpoint: str  # written when the first unit finished, well before the run ends
    diverge: list[str]  # flags that push a model to NaN/Inf
    other_flags: list[str] = field(default_factory=lambda: ["--tuning-seed", "101"])  # a different config

    @property
    def script(self) -> Path:
        return REPO_ROOT / self.folder / "run_experiment.py"

    def main(self, argv: list[str]) -> int:
        return importlib.import_module(f"{self.folder}.run_experiment").main(argv)


EXPS = {
    "exp1": Exp("exp1_spectral_cliff",
                ["--quick", "--quiet", "--num-train-trajectories", "32", "--train-steps", "20",
                 "--num-eval-states", "4", "--horizons", "5", "20", "50", "--variants", "flat", "helm"],
                "flat_seed0.pt", ["--lr", "1e6"]),
    "exp2": Exp("exp2_funnel_heatmap",
                ["--quick", "--quiet", "--train-steps", "20", "--grid-resolution", "20", "--basin-grid-resolution", "5",
                 "--gd-steps-basin", "10", "--polish-steps", "10", "--hidden-dim", "8", "--num-fourier-features", "8",
                 "--batch-size", "32"],
                "flat_seed0.pt", ["--lr", "7e5"]),  # sends some of the models (not all) to NaN
    "exp3": Exp("exp3_planning_efficiency",
                ["--quick", "--quiet", "--tracks", "unseen-layouts", "--num-train-layouts", "4",
                 "--walks-per-layout", "5", "--model-train-steps", "20", "--energy-train-steps", "20",
                 "--planning-horizons", "10", "20", "--num-eval-episodes", "2", "--num-test-layouts", "2",
                 "--planners", "flat", "helm", "cem",
                 "--helm-num-samples", "8", "--cem-num-samples", "16", "--no-coarse-num-samples", "16"],
                "models_layouts_seed0.pt", ["--model-lr", "1e6"]),
}
pytestmark = pytest.mark.slow  # every test here runs whole (tiny) experiments
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VOLATILE_KEYS = {"runtime_seconds", "environment"}


def read_metrics(out: Path) -> dict:
    return json.loads((out / "results" / "metrics.json").read_text())


def comparable(metrics: dict, out: Path) -> dict:
    """metrics without timings, environment and the fields of role "run" (output folder, ...)."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in VOLATILE_KEYS and "seconds" not in k}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj.replace(str(out), "<out>") if isinstance(obj, str) else obj
    stripped = strip(metrics)
    for name in fields_with_role(CONFIGS[stripped["experiment"][:4]], "run"):  # how a run is shown, not what
        stripped["config"].pop(name)
    return stripped


def assert_outputs_readable(out: Path) -> None:
    """Every JSON, checkpoint and array file of a run parses (temporary files of atomic writes aside)."""
    files = [p for p in out.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)]
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            assert isinstance(read_checkpoint(path), dict), path
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                [arrays[k] for k in arrays.files]


def run_cli(exp: Exp, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(exp.script), *args], capture_output=True, text=True,
                          env=SUBPROCESS_ENV, timeout=120)


_reference_cache: dict[str, Path] = {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process tiny run per experiment (made once): name -> its out dir."""
    def get(name: str) -> Path:
        if name not in _reference_cache:
            out = tmp_path_factory.mktemp(f"{name}_reference")
            assert EXPS[name].main(EXPS[name].tiny + ["--out-dir", str(out)]) == 0
            _reference_cache[name] = out
        return _reference_cache[name]
    return get


# ----------------------------------------------------------------------------------------------
# interrupt and resume


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("name", EXPS)
def test_interrupted_run_resumes_to_the_uninterrupted_metrics(name, sig, reference, tmp_path):
    exp, out = EXPS[name], tmp_path / "run"
    ckpt = out / "checkpoints" / exp.first_checkpoint
    proc = subprocess.Popen([sys.executable, str(exp.script), *exp.tiny, "--out-dir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    try:
        deadline = time.monotonic() + 90
        while not ckpt.exists():
            if proc.poll() is not None:
                pytest.fail(f"run exited ({proc.returncode}) before writing {ckpt.name}: {proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, f"no {ckpt.name} after 90 s"
            time.sleep(0.01)
        proc.send_signal(sig)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert returncode == -sig, f"the run was not interrupted (exit code {returncode}): the test config is too small"
    assert not (out / "results" / "metrics.json").exists()
    assert_outputs_readable(out)
    first_unit_mtime = ckpt.stat().st_mtime_ns

    assert exp.main(exp.tiny + ["--out-dir", str(out)]) == 0
    assert_outputs_readable(out)
    assert ckpt.stat().st_mtime_ns == first_unit_mtime, "the finished unit was retrained instead of resumed"
    ref = reference(name)
    assert comparable(read_metrics(out), out) == comparable(read_metrics(ref), ref)
    assert (sorted(p.name for p in (out / "plots").glob("*.png"))
            == sorted(p.name for p in (ref / "plots").glob("*.png")))


# ----------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("name", EXPS)
def test_same_seed_twice_gives_identical_metrics(name, reference, tmp_path):
    exp, ref = EXPS[name], reference(name)
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 0
    again, first = comparable(read_metrics(tmp_path), tmp_path), comparable(read_metrics(ref), ref)
    assert again == first
    assert [c["measured"] for c in again["criteria"]] == [c["measured"] for c in first["criteria"]]


# ----------------------------------------------------------------------------------------------
# divergence


def diverged_units(obj, path="") -> list[str]:
    """Paths of every `diverged: true` and non-empty `diverged_seeds` entry in a metrics dict."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{path}/{k}"
            if k == "diverged" and v is True:
                found.append(here)
            elif k == "diverged_seeds" and (any(v.values()) if isinstance(v, dict) else bool(v)):
                found.append(here)
            else:
                found += diverged_units(v, here)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += diverged_units(v, f"{path}/{i}")
    return found


@pytest.mark.parametrize("name", list(EXPS))
def test_diverged_model_is_recorded_and_run_finishes(name, tmp_path):
    exp = EXPS[name]
    assert exp.main(exp.tiny + exp.diverge + ["--out-dir", str(tmp_path)]) == 0
    metrics = read_metrics(tmp_path)
    assert diverged_units(metrics), "a model trained with a huge learning rate was not recorded as diverged"
    assert metrics["criteria"] and not all(c["passed"] for c in metrics["criteria"])
    assert (tmp_path / "results" / "config.json").exists()
    assert_outputs_readable(tmp_path)
    if name == "exp2":  # the models that stayed finite are still measured
        finite = [n for n, seeds in metrics["diverged_seeds"].items() if not seeds]
        assert finite and all(metrics["coverage"][n]["mean"] is not None for n in finite)



# ----------------------------------------------------------------------------------------------
# bad input (the table of bad invocations is tests/test_bad_input.py)


def assert_one_error_line(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], f"expected one error line, got: {stderr!r}"


def unwritable_out_dirs(tmp_path: Path) -> list[Path]:
    """Output folders no run can create: a regular file, a folder under a file, a read-only mount."""
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me\n")
    dirs = [blocker, blocker / "sub"]
    if not os.access("/proc/sys", os.W_OK):  # read-only even for root on this machine (not everywhere)
        dirs.append(Path("/proc/sys/helm_out"))
    return dirs


@pytest.mark.parametrize("name", EXPS)
def test_unwritable_out_dir_exits_2_with_one_line(name, tmp_path, capsys):
    for out in unwritable_out_dirs(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            EXPS[name].main(EXPS[name].tiny + ["--out-dir", str(out)])
        assert exit_info.value.code == 2
        assert_one_error_line(capsys.readouterr().err)
        assert not out.exists() or out.read_text() == "keep me\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.parametrize("name,flags", [("exp1", ["--horizons", "0"]), ("exp2", ["--lr", "abc"]),
                                        ("exp3", ["--tracks", "mars"])])
def test_bad_invocation_through_the_command_line(name, flags, tmp_path):
    out = tmp_path / "out"
    result = run_cli(EXPS[name], flags + ["--out-dir", str(out)])
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert not out.exists()


# ----------------------------------------------------------------------------------------------
# output policy


@pytest.mark.parametrize("name", list(EXPS))
def test_another_configs_folder_is_refused_and_the_same_config_resumes(name, reference, tmp_path, capsys):
    exp, ref, out = EXPS[name], reference(name), tmp_path / "run"
    shutil.copytree(ref, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    result = run_cli(exp, exp.tiny + exp.other_flags + ["--out-dir", str(out)])  # a different config
    assert result.returncode == 2 and result.stdout == ""
    assert_one_error_line(result.stderr)
    assert "another config (tuning_seed differ)" in result.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written or moved

    # the same config again, with flags that change only how a run is shown: it resumes in place
    assert exp.main(exp.tiny + ["--strict", "--out-dir", str(out)]) in (0, 1)
    assert comparable(read_metrics(out), out) == comparable(read_metrics(ref), ref)
    assert not (out / "previous").exists() and not (out / ".staging").exists()


# ----------------------------------------------------------------------------------------------
# faults after validation: one line naming the file and the remedy, nothing half-published


def assert_one_fault_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, f"expected one line, got: {stderr!r}"
    assert all(word in lines[0] for word in words), lines[0]


def published(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for folder in ("results", "plots") for p in (out / folder).rglob("*")
                  if p.is_file())


CORRUPTIONS = [  # (experiment, saved file, how it is broken)
    ("exp1", "exp1_arrays.npz", "truncated"), ("exp2", "exp2_arrays.npz", "truncated"),
    ("exp3", "exp3_arrays.npz", "empty"),
    ("exp1", "config.json", "truncated"), ("exp2", "sweep.json", "truncated"), ("exp3", "metrics.json", "truncated"),
]


@pytest.mark.parametrize("name,saved,how", CORRUPTIONS, ids=[f"{n}:{f}:{h}" for n, f, h in CORRUPTIONS])
def test_plots_only_names_a_corrupted_saved_file(name, saved, how, tmp_path, capsys):
    committed = REPO_ROOT / EXPS[name].folder / "results"
    shutil.copytree(committed, tmp_path / "results")
    path = tmp_path / "results" / saved
    path.write_bytes(b"" if how == "empty" else path.read_bytes()[:len(path.read_bytes()) // 2])
    assert EXPS[name].main(["--plots-only", "--quiet", "--out-dir", str(tmp_path)]) == 1
    assert_one_fault_line(capsys.readouterr().err, str(path), "unreadable", "restore it")
    assert not (tmp_path / "plots").exists()


def test_resuming_next_to_a_truncated_sweep_names_it(tmp_path, capsys):
    exp = EXPS["exp2"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sweep.json").write_text('{"rows": [{"form": "fl')
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 1
    assert_one_fault_line(capsys.readouterr().err, str(tmp_path / "results" / "sweep.json"), "unreadable")
    assert not (tmp_path / "checkpoints").exists()  # refused before training


def test_full_disk_publishes_nothing_and_the_same_command_resumes(reference, tmp_path, capsys, monkeypatch):
    """A disk that fills up while the results are staged (a patched write: a small tmpfs needs root)."""
    exp, write = EXPS["exp2"], runs.atomic_write_bytes

    def full_when_staging(path, data):
        with naming(path):
            if ".staging" in Path(path).parts:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", full_when_staging)
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 1
    assert_one_fault_line(capsys.readouterr().err, "no space left on device", str(tmp_path / ".staging"),
                          "nothing was published", "same command")
    assert published(tmp_path) == []
    monkeypatch.setattr(runs, "atomic_write_bytes", write)
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 0
    assert (comparable(read_metrics(tmp_path), tmp_path)
            == comparable(read_metrics(reference("exp2")), reference("exp2")))
    assert not (tmp_path / ".staging").exists()


def test_ctrl_c_prints_one_line_and_the_same_command_resumes(reference, tmp_path, capsys, monkeypatch):
    exp = EXPS["exp2"]
    monkeypatch.setattr(runs, "write_results", mock.Mock(side_effect=KeyboardInterrupt))  # Ctrl-C while staging
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 130
    assert_one_fault_line(capsys.readouterr().err, "interrupted", "nothing was published", "same command")
    assert published(tmp_path) == []
    monkeypatch.undo()
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").glob("*.pt")}
    assert checkpoints and exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints  # resumed, not retrained
    assert (comparable(read_metrics(tmp_path), tmp_path)
            == comparable(read_metrics(reference("exp2")), reference("exp2")))


def test_a_folder_in_the_way_of_a_plot_publishes_nothing(tmp_path, capsys):
    """A destination the validation does not know (one plot's name) blocked by a folder: every
    destination is checked before any file moves, so the results stay unpublished too."""
    exp, blocker = EXPS["exp2"], tmp_path / "plots" / "exp2_true_energy.png"
    blocker.mkdir(parents=True)
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 1
    assert_one_fault_line(capsys.readouterr().err, str(blocker), "nothing was published")
    assert published(tmp_path) == []
    blocker.rmdir()
    assert exp.main(exp.tiny + ["--out-dir", str(tmp_path)]) == 0 and "results/metrics.json" in published(tmp_path)
