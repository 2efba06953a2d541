"""Experiment 3: random walks -> world models + goal energies -> planners on three tracks -> plots.

    python run_experiment.py [--quick] [--tracks unseen-layouts] [--seeds 0 1 2] [--jobs 2] ...  (see --help)
    python run_experiment.py --plots-only    # redraw every plot from the saved results, no training

Tracks: `unseen-layouts` (train on `num_train_layouts` spanning-tree mazes, evaluate on disjoint test
layouts), `limited-data` (one fixed maze, `limited_data_walks` random walks, evaluated on it) and
`fourrooms` (the unseen-layouts models zero-shot on MiniGrid-FourRooms-v0). The work is split into
units (seed x data source, `units.py`) run in `--jobs` processes; trained models and evaluations are
checkpointed with the config fields they depend on and skipped when a rerun would redo them identically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.cli import command, read_npz
from common.cli_parse import parse
from common.config import Exp3Config
from common.runs import run_or_redraw, write_npz
from exp3_planning_efficiency import analyze_planning, plots
from exp3_planning_efficiency.units import run_all_units

PROG = "exp3_planning_efficiency/run_experiment.py"


def measure(cfg, device, results: Path) -> tuple[dict, list, dict]:
    """Run every (seed, data source) unit: (metrics, criteria, arrays), the arrays (loss curves and
    episode outcomes) saved to `results`/exp3_arrays.npz."""
    units = run_all_units(cfg, device)
    metrics = analyze_planning.summarize(units, cfg)
    arrays = {f"{name}_loss_{source}_seed{seed}": np.asarray(curve, dtype=np.float32)
              for (seed, source), r in units.items() for name, curve in r["loss_curves"].items()}
    arrays |= analyze_planning.outcome_arrays(units)
    write_npz(results / "exp3_arrays.npz", arrays)
    return metrics, analyze_planning.criteria(metrics, cfg), arrays


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp3Config, argv, prog=PROG)
    return run_or_redraw(
        cfg, "exp3_planning_efficiency", measure, report=lambda cfg, metrics: analyze_planning.format_tables(metrics),
        plot=lambda cfg, arrays, metrics_path, plot_dir: plots.make_plots(metrics_path, arrays, plot_dir),
        saved=lambda cfg: (cfg, read_npz(cfg.output_dir() / "results" / "exp3_arrays.npz")),
        sweeps={"layout_sweep.json": lambda sweep, plot_dir: plots.plot_layout_sweep(
            sweep, plot_dir / "exp3_layout_sweep.png"), "reach_map.json": plots.plot_reach_map})


if __name__ == "__main__":
    sys.exit(main())
