"""`--plots-only` redraws every committed plot from the committed files alone (as on a fresh clone).

The committed `results/` of each experiment is copied into a temporary output folder, and
`--plots-only --out-dir` must rebuild a plot for every committed figure of that experiment, with
no checkpoint and no training.
"""

from __future__ import annotations

import importlib
import shutil

import pytest

from common.output_folder import REPO_ROOT

pytestmark = pytest.mark.slow
EXPERIMENTS = ["exp1_spectral_cliff", "exp2_funnel_heatmap", "exp3_planning_efficiency"]


@pytest.mark.parametrize("folder", EXPERIMENTS)
def test_plots_only_rebuilds_every_committed_plot_from_committed_results(folder, tmp_path, capsys):
    committed = REPO_ROOT / folder
    if not (committed / "results" / "metrics.json").exists():
        pytest.skip(f"{folder} has no committed full default run yet")
    shutil.copytree(committed / "results", tmp_path / "results")
    main = importlib.import_module(f"{folder}.run_experiment").main
    assert main(["--plots-only", "--quiet", "--out-dir", str(tmp_path)]) == 0
    expected = sorted(p.name for p in (committed / "plots").glob("*.png"))
    assert expected and sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == expected
    assert not (tmp_path / "checkpoints").exists()
