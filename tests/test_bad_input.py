"""A table of bad invocations across the three experiments: each is refused before any work.

Every row must exit with code 2, print exactly one line on stderr (no traceback) and nothing on
stdout, write or move no file anywhere in the repository (committed findings, runs/, checkpoints)
or in the hostile folders some rows point `--out-dir` at, and do so in under 5 s. The rows run
in-process (`main(argv)`), as a user's command line would, without `--out-dir` unless the row is
about it, so the default output folders are the ones at risk. `--dry-run` rows check that a dry run
refuses what the real run refuses (one validation path).
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest
import torch

from common.config import available_cpus
from common.output_folder import REPO_ROOT

SCRIPTS = {"exp1": "exp1_spectral_cliff.run_experiment", "exp2": "exp2_funnel_heatmap.run_experiment",
           "exp3": "exp3_planning_efficiency.run_experiment", "sweep1": "exp1_spectral_cliff.sweep_lambda",
           "sweep2": "exp2_funnel_heatmap.sweep", "tune3": "exp3_planning_efficiency.tune",
           "sweep3": "exp3_planning_efficiency.sweep_layouts"}
EMPTY = "<empty tmp folder>"
LOOP = "<a symlink loop>"
UNDER_LOOP = "<a folder under a symlink loop>"
LONG_NAME = "<a 300-character name>"
CHECKPOINTS_FILE = "<a folder whose checkpoints is a file>"
PLOTS_FILE = "<a folder whose plots is a file>"
CONFIG_FOLDER = "<a folder whose results/config.json is a folder>"
COMMITTED_EXP2 = str(REPO_ROOT / "exp2_funnel_heatmap")
TOO_MANY_CPUS = str(available_cpus() + 1)

BAD = [  # (script, flags, what is wrong)
    ("exp3", ["--energy-family", "local", "--energy-reach", "8"], "a reach for an energy that does not propagate"),
    ("exp1", ["--lr", "inf"], "non-finite float"),
    ("exp1", ["--lr", "-inf"], "non-finite float written like a flag"),
    ("exp1", ["--dt-model", "inf"], "non-finite float"),
    ("exp1", ["--hf-noise-sigma", "nan"], "NaN"),
    ("exp1", ["--lambda-sweep", "0.1", "-inf"], "non-finite list element"),
    ("exp1", ["--seeds", "-1"], "seed below numpy's range"),
    ("exp1", ["--seeds", "99999999999"], "seed above numpy's range"),
    ("exp1", ["--seeds", "1" + "0" * 30], "seed beyond any integer type"),
    ("exp1", ["--horizons", "100000"], "absurd horizon (hangs)"),
    ("exp1", ["--num-train-trajectories", "1000000"], "absurd data size (hangs)"),
    ("exp1", ["--num-train-trajectories", "100000", "--trajectory-steps", "10000"], "data would need ~200 GiB"),
    ("exp1", ["--horizons", "1000", "--num-eval-states", "10000", "--num-test-trajectories", "10000"],
     "Jacobians would need ~10 GiB"),
    ("exp1", ["--num-threads", "100000"], "more threads than CPUs (segfaulted)"),
    ("exp1", ["--num-threads", TOO_MANY_CPUS], "more threads than CPUs"),
    ("exp1", ["--quick", "--no-quick"], "contradictory flags"),
    ("exp1", ["--train-steps", "ten"], "bad type"),
    ("exp1", ["--horizons", "-5"], "out of range"),
    ("exp1", ["--variants", "flat", "bogus"], "unknown choice"),
    ("exp1", ["--dt-model", "0.013"], "not a multiple of dt"),
    ("exp1", ["--trian-steps", "5"], "misspelt flag"),
    ("exp1", ["--num-eval-states", "999"], "more eval states than test trajectories"),
    ("exp1", ["--plots-only", "--out-dir", EMPTY], "--plots-only with nothing saved"),
    ("exp1", ["--out-dir", "/proc/x"], "impossible out-dir"),
    ("sweep1", ["--lambda-sweep", "nan"], "sweep script: NaN"),
    ("exp2", ["--train-steps", "1000000"], "absurd training length (hangs)"),
    ("exp2", ["--basin-grid-resolution", "100000"], "absurd grid (traceback)"),
    ("exp2", ["--batch-size", "100000000"], "absurd batch (tried to allocate 80 GB)"),
    ("exp2", ["--batch-size", "65536", "--hidden-dim", "4096", "--num-layers", "16"], "a step would need ~190 GiB"),
    ("exp2", ["--gd-lr-basin", "inf"], "non-finite float"),
    ("exp2", ["--sweep-sigmas", "0.1", "inf"], "non-finite list element"),
    ("exp2", ["--hf-noise-sigma", "0"], "out of range"),
    ("exp2", ["--grid-resolution", "1.5"], "bad type"),
    ("exp2", ["--hf-form", "magic"], "unknown choice"),
    ("exp2", ["--seeds", "0", "0"], "duplicate seeds"),
    ("exp2", ["--tuning-seed", "1"], "tuning seed among the reported seeds"),
    ("exp2", ["--seeds"], "missing value"),
    ("exp2", ["--no-such-flag"], "unknown flag"),
    ("exp2", ["--device", "tpu"], "unknown device"),
    ("exp2", ["--quiet", "--quiet"], "a flag given twice"),
    ("exp2", ["--plots-only", "--lr", "0.5"], "--plots-only for a config never run"),
    ("sweep2", ["--sweep-lambdas", "-1"], "sweep script: out of range"),
    ("exp3", ["--num-eval-episodes", "100000"], "absurd episode count (hangs)"),
    ("exp3", ["--limited-data-walks", "100000000"], "absurd data size (traceback)"),
    ("exp3", ["--coarse-stride", "9"], "3^9 macro-actions: beyond the coarse model's reach"),
    ("exp3", ["--cem-horizon", "100000"], "absurd CEM horizon"),
    ("exp3", ["--cem-num-samples", "100000", "--num-eval-episodes", "1000"], "CEM batch would need ~150 GiB"),
    ("exp3", ["--jobs", "1000"], "more worker processes than CPUs"),
    ("exp3", ["--jobs", TOO_MANY_CPUS], "more worker processes than CPUs"),
    ("exp3", ["--model-lr", "nan"], "NaN"),
    ("exp3", ["--tracks", "mars"], "unknown track"),
    ("exp3", ["--cem-elite-frac", "1.5"], "out of range"),
    ("exp3", ["--planners", "astar"], "unknown choice"),
    ("exp3", ["--quick=maybe"], "a boolean flag given a value"),
    ("exp3", ["--planning-horizons", "10", "200"], "a horizon no task of the maze has"),
    ("exp3", ["--plots-only", "--quick", "--tuning-seed", "4321"], "--plots-only for a config never run"),
    ("tune3", ["--num-walks", "0"], "tuning script: out of range"),
    ("tune3", ["--tuning-sweep", "everything"], "tuning script: unknown sweep"),
    ("sweep3", ["--layout-sweep", "10", "0"], "layout sweep: out of range"),
    ("sweep3", ["--layout-sweep-seeds", "4"], "layout sweep: more seeds than --seeds"),
    # round two (issue 22): derived checks, paths in the way, --plots-only where it means nothing
    ("exp1", ["--quick", "--dt", "1e-320"], "dt so small that dt_model / dt overflows (traceback)"),
    ("exp1", ["--quick", "--dt", "1e-300"], "burn-in would need 5e300 RK4 steps (hang)"),
    ("exp1", ["--quick", "--dt-model", "1e-9"], "0 RK4 substeps per model step (crashed 5 s later)"),
    ("exp1", ["--quick", "--dt-model", "1e-9", "--dry-run"], "a dry run refuses what the run refuses"),
    ("sweep1", ["--quick", "--dt-model", "1e-9"], "frontier sweep on a frozen system (exit 0)"),
    ("exp1", ["--quick", "--out-dir", LOOP], "out-dir at a symlink loop (traceback)"),
    ("exp2", ["--quick", "--out-dir", UNDER_LOOP], "out-dir under a symlink loop (traceback)"),
    ("tune3", ["--quick", "--out-dir", LOOP], "tuning script: out-dir at a symlink loop (traceback)"),
    ("exp2", ["--quick", "--out-dir", LONG_NAME], "a name longer than the file system allows (traceback)"),
    ("exp1", ["--quick", "--out-dir", CHECKPOINTS_FILE], "checkpoints/ is a file (traceback after training)"),
    ("exp2", ["--quick", "--out-dir", PLOTS_FILE], "plots/ is a file"),
    ("exp1", ["--quick", "--out-dir", CONFIG_FOLDER], "results/config.json is a folder (half-published run)"),
    ("exp2", ["--quick", "--domain-half-width", "1e-320"], "a domain float32 cannot hold (every model NaN)"),
    ("exp3", ["--quick", "--planning-horizons", "199", "--dry-run"], "a dry run refuses what the run refuses"),
    ("exp3", ["--quick", "--planning-horizons", "199"], "a horizon no task of the test layouts has"),
    ("exp3", ["--quick", "--tracks", "fourrooms", "--planning-horizons", "199"], "FourRooms alone: an empty table"),
    ("exp3", ["--quick", "--tracks", "fourrooms", "--planning-horizons", "80"],
     "FourRooms alone: no horizon with tasks"),
    ("tune3", ["--quick", "--planning-horizons", "199"], "tuning script: trained and printed {}"),
    ("sweep3", ["--quick", "--planning-horizons", "199"], "layout sweep: trained and printed {}"),
    ("sweep1", ["--plots-only", "--out-dir", EMPTY], "sweep script: --plots-only ignored, trained"),
    ("sweep2", ["--plots-only", "--out-dir", EMPTY], "sweep script: --plots-only ignored, trained"),
    ("tune3", ["--plots-only"], "tuning script draws no figure"),
    ("sweep3", ["--plots-only", "--dry-run"], "layout sweep: no plots-only mode, dry run included"),
    ("exp1", ["--horizons", "5", "5"], "a repeated horizon doubled table rows"),
    ("sweep1", ["--lambda-sweep", "0.1", "0.1"], "a repeated strength: two rows with different numbers"),
    ("sweep2", ["--sweep-sigmas", "0.05", "0.05"], "a repeated sigma trained twice"),
    ("exp1", ["--variants", "flat", "flat"], "a repeated variant collapsed"),
    ("exp3", ["--tracks", "fourrooms", "fourrooms"], "a repeated track"),
    ("exp1", ["--growth-fit-min-horizon", "1000"], "no horizon left to fit a growth rate (criterion n/a)"),
    ("exp1", ["--horizons", "5", "10"], "one horizon >= growth_fit_min_horizon: no growth rate"),
    ("exp2", ["--plots-only", "--quick", "--out-dir", COMMITTED_EXP2], "--plots-only of the committed findings "
     "asked for with another config's flag"),
]
if not torch.cuda.is_available():
    BAD.append(("exp1", ["--device", "cuda"], "cuda without a GPU (traceback)"))
    BAD.append(("exp3", ["--device", "cuda"], "cuda without a GPU"))


def test_the_table_is_large_and_covers_every_experiment():
    assert len(BAD) > 80
    assert {row[0][:4] for row in BAD} >= {"exp1", "exp2", "exp3"}


def hostile_folders(tmp: Path) -> dict[str, Path]:
    """The output folders the rows' placeholders stand for, made under `tmp`."""
    (tmp / "empty").mkdir()
    (tmp / "loop").symlink_to("loop")
    for name, blocker in (("ck", "checkpoints"), ("pl", "plots")):
        (tmp / name).mkdir()
        (tmp / name / blocker).write_text("in the way\n")
    (tmp / "cfg" / "results" / "config.json").mkdir(parents=True)
    return {EMPTY: tmp / "empty", LOOP: tmp / "loop", UNDER_LOOP: tmp / "loop" / "sub", LONG_NAME: tmp / ("x" * 300),
            CHECKPOINTS_FILE: tmp / "ck", PLOTS_FILE: tmp / "pl", CONFIG_FOLDER: tmp / "cfg"}


def tree(folder: Path) -> list[str]:
    """Every path under `folder` (symlinks not followed)."""
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


@pytest.mark.parametrize("script,flags,why", BAD, ids=[f"{s}:{' '.join(f)}"[:80] for s, f, _ in BAD])
def test_bad_invocation_is_refused_before_any_work(script, flags, why, tmp_path, capsys, repo_files):
    hostile = hostile_folders(tmp_path)
    flags = [str(hostile.get(f, f)) for f in flags]
    made = tree(tmp_path)
    main = importlib.import_module(SCRIPTS[script]).main
    before = repo_files()
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, why
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    assert repo_files() == before, "a refused invocation wrote or moved a file in the repository"
    assert tree(tmp_path) == made, "a refused invocation wrote into its output folder"
    assert seconds < 5, f"refusing took {seconds:.1f} s"
