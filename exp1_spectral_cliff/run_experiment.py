"""Experiment 1, spectral cliff: train Flat/HELM ablations on controlled Lorenz, measure rollout
Jacobians, planning convergence and accuracy, write plots + metrics, print the criteria.

    python run_experiment.py                 # full default run (4 variants x 3 seeds)
    python run_experiment.py --quick         # smoke run (writes to runs/, never to the committed findings)
    python run_experiment.py --plots-only    # redraw every plot from the saved results, no training
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.cli import command
from common.cli_parse import parse
from common.config import Exp1Config
from common.output_folder import with_saved_fields
from common.runs import run_or_redraw, seed_everything
from exp1_spectral_cliff import analyze_spectrum as analysis
from exp1_spectral_cliff.arrays import load_arrays, save_arrays
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.measurements import measure_true, measure_variant
from exp1_spectral_cliff.plots import make_plots, plot_saved_sweep
from exp1_spectral_cliff.training import launch_variant_units, train_and_load

PROG = "exp1_spectral_cliff/run_experiment.py"


def measure(cfg, device, results: Path) -> tuple[dict, list, dict]:
    """Train (or resume) every variant and measure it: (metrics, criteria, arrays), the arrays saved
    to `results`/exp1_arrays.npz."""
    if cfg.launcher != "inline":
        launch_variant_units(cfg, cfg.output_dir() / "checkpoints", device)
    datasets = {s: make_dataset(cfg, s) for s in cfg.seeds}
    arrays = {"true": measure_true(cfg, datasets, device)}
    training = {}
    for variant in cfg.variants:
        seed_everything(cfg.seeds[0])  # every random draw below uses named streams; belt and braces
        models, seeds, training[variant], curves = train_and_load(cfg, variant, datasets,
                                                                  cfg.output_dir() / "checkpoints", device)
        arrays[variant] = {**measure_variant(cfg, models, seeds, datasets),
                           "loss_curves": curves.astype(np.float32)}
    save_arrays(results / "exp1_arrays.npz", cfg, arrays)
    summary = analysis.summarize(cfg, arrays)
    metrics = {"protocol": cfg.train_protocol, "variants": summary, "accuracy_cost": analysis.accuracy_cost(summary),
               "training": training}
    return metrics, analysis.criteria(cfg, summary), arrays


def saved(cfg) -> tuple:
    """The saved run --plots-only redraws: its config (number-changing fields) and arrays."""
    return with_saved_fields(cfg), load_arrays(cfg.output_dir() / "results" / "exp1_arrays.npz")


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp1Config, argv, prog=PROG)
    return run_or_redraw(cfg, "exp1_spectral_cliff", measure, report=analysis.format_tables,
                         plot=lambda cfg, arrays, metrics_path, plot_dir: make_plots(cfg, arrays, plot_dir),
                         saved=saved, sweeps={"sweep.json": plot_saved_sweep})


if __name__ == "__main__":
    sys.exit(main())
