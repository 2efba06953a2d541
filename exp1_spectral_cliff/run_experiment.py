"""Experiment 1, spectral cliff: train Flat/HELM ablations on controlled Lorenz, measure rollout
Jacobians, planning convergence and accuracy, write plots + metrics, print the criteria.

    python run_experiment.py                 # full default run (4 variants x 3 seeds)
    python run_experiment.py --quick         # smoke run (writes to runs/, never to the committed findings)
    python run_experiment.py --plots-only    # redraw every plot from the saved results, no training
"""

from __future__ import annotations

import sys

import numpy as np

from common.cli import command, read_json
from common.cli_parse import parse
from common.config import Exp1Config
from common.output_folder import with_saved_fields
from common.runs import StagedOutputs, Timer, finish, seed_everything, setup_torch, write_results
from exp1_spectral_cliff import analyze_spectrum as analysis
from exp1_spectral_cliff.arrays import load_arrays, save_arrays
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.measurements import measure_true, measure_variant
from exp1_spectral_cliff.plots import make_plots, plot_saved_sweep
from exp1_spectral_cliff.train_helm import launch_variant_units, train_and_load

PROG = "exp1_spectral_cliff/run_experiment.py"


def measure(cfg, device) -> tuple[dict, dict]:
    """Train (or resume) every variant and measure it; returns (arrays, training info)."""
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
    return arrays, training


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp1Config, argv, prog=PROG)
    timer, device = Timer(), setup_torch(cfg)
    out = cfg.output_dir()
    staged = StagedOutputs(out)
    if cfg.plots_only:
        cfg = with_saved_fields(cfg)
        arrays = load_arrays(out / "results" / "exp1_arrays.npz")
    else:
        arrays, training = measure(cfg, device)
        save_arrays(staged.results / "exp1_arrays.npz", cfg, arrays)
        summary = analysis.summarize(cfg, arrays)
        criteria = analysis.make_criteria(cfg, summary)
        accuracy = analysis.accuracy_cost(summary)
        metrics = {"protocol": cfg.train_protocol, "variants": summary, "accuracy_cost": accuracy,
                   "training": training}
        write_results(cfg, staged.results, "exp1_spectral_cliff", metrics, criteria, timer.seconds(), device)
        for label in ("norm_action", "norm_state"):
            print(f"\n{label} (median [q25, q75] over seeds x test states)\n"
                  + analysis.norm_table(cfg, summary, label))
        print("\nplanning in the true system (ceiling: the planner on the true system; floors: zero / random actions)\n"
              + analysis.control_table(cfg, summary))
        for key, v in accuracy.items():
            print(f"accuracy cost: HELM {key} / Flat = {v['helm_over_flat']} (HELM {v['helm']}, Flat {v['flat']})")
    make_plots(cfg, arrays, staged.plots)
    sweep_path = out / "results" / "sweep.json"
    if sweep_path.exists():
        plot_saved_sweep(read_json(sweep_path), staged.plots)
    outputs = staged.publish()
    if cfg.plots_only:
        print("\n".join(f"wrote {p}" for p in outputs))
        return 0
    return finish(cfg, criteria, outputs, timer.seconds())


if __name__ == "__main__":
    sys.exit(main())
