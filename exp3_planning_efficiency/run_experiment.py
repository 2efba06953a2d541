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

import numpy as np

from common.cli_parse import parse
from common.config import Exp3Config
from common.cli import command, read_npz
from common.runs import StagedOutputs, Timer, finish, read_json, setup_torch, write_npz, write_results
from exp3_planning_efficiency import analyze_planning
from exp3_planning_efficiency.units import run_all_units

PROG = "exp3_planning_efficiency/run_experiment.py"


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp3Config, argv, prog=PROG)
    timer, out = Timer(), cfg.output_dir()
    device = setup_torch(cfg)
    staged = StagedOutputs(out)
    if cfg.plots_only:
        analyze_planning.plot_all(out / "results" / "metrics.json", read_npz(out / "results" / "exp3_arrays.npz"),
                                  staged.plots)
        if (out / "results" / "layout_sweep.json").exists():
            analyze_planning.plot_layout_sweep(read_json(out / "results" / "layout_sweep.json"),
                                               staged.plots / "exp3_layout_sweep.png")
        print("\n".join(f"wrote {p}" for p in staged.publish()))
        return 0
    units = run_all_units(cfg, device)
    metrics = analyze_planning.summarize(units, cfg)
    criteria = analyze_planning.criteria(metrics, cfg)
    metrics_path = write_results(cfg, staged.results, "exp3_planning_efficiency", metrics, criteria, timer.seconds(),
                                 device)
    arrays = {f"{name}_loss_{source}_seed{seed}": np.asarray(curve, dtype=np.float32)
              for (seed, source), r in units.items() for name, curve in r["loss_curves"].items()}
    arrays |= analyze_planning.outcome_arrays(units)
    write_npz(staged.results / "exp3_arrays.npz", arrays)
    analyze_planning.plot_all(metrics_path, arrays, staged.plots)
    print(analyze_planning.format_tables(metrics))
    return finish(cfg, criteria, staged.publish(), timer.seconds())


if __name__ == "__main__":
    sys.exit(main())
