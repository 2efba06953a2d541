"""Experiment 1, spectral cliff: train Flat/HELM ablations on controlled Lorenz, measure rollout
Jacobians, planning convergence and accuracy, write plots + metrics, print the criteria.

    python run_experiment.py                 # full default run (4 variants x 3 seeds)
    python run_experiment.py --quick         # smoke run
    python run_experiment.py --plots-only    # rebuild metrics + plots from results/exp1_arrays.npz
"""

from __future__ import annotations

import dataclasses
import sys

from common.config import Exp1Config, parse
from common.runs import (Timer, finish, prepare_output_dir, read_json, seed_everything, setup_torch,
                         write_results)
from exp1_spectral_cliff import analyze_spectrum as analysis
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.train_helm import train_and_load


def measure(cfg) -> tuple[dict, dict]:
    """Train (or resume) every variant and measure it; returns (arrays, training info)."""
    datasets = {s: make_dataset(cfg, s) for s in cfg.seeds}
    arrays = {"true": {**analysis.true_log_norms(cfg, datasets), "diverged": [False] * len(cfg.seeds)}}
    training = {}
    for variant in cfg.variants:
        seed_everything(cfg.seeds[0])  # every random draw below uses explicit generators; belt and braces
        models, seeds, training[variant] = train_and_load(cfg, variant, datasets, cfg.output_dir() / "checkpoints")
        arrays[variant] = analysis.analyze_variant(cfg, models, seeds, datasets)
    return arrays, training


def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp1Config, argv, prog="exp1_spectral_cliff/run_experiment.py")
    timer, device = Timer(), setup_torch(cfg)
    results_dir, arrays_path = cfg.output_dir() / "results", cfg.output_dir() / "results" / "exp1_arrays.npz"
    if cfg.plots_only:  # the saved run's config decides horizons, seeds, ...
        saved = read_json(results_dir / "metrics.json")
        cfg = dataclasses.replace(Exp1Config(**saved["config"]), out_dir=cfg.out_dir)
        arrays, training = analysis.load_arrays(arrays_path), saved.get("training", {})
        runtime = saved["runtime_seconds"]
    else:
        prepare_output_dir(cfg)  # a different config's results are moved to previous/, never overwritten
        arrays, training = measure(cfg)
        analysis.save_arrays(arrays_path, cfg, arrays)
        runtime = None
    summary = analysis.summarize(cfg, arrays)
    criteria = analysis.make_criteria(cfg, summary)
    plots = analysis.make_plots(cfg, arrays, cfg.output_dir() / "plots")
    accuracy = analysis.accuracy_cost(summary)
    runtime = timer.seconds() if runtime is None else runtime
    metrics = {"protocol": cfg.train_protocol, "variants": summary, "accuracy_cost": accuracy, "training": training}
    path = write_results(cfg, "exp1_spectral_cliff", metrics, criteria, runtime, device)
    for label in ("norm_action", "norm_state"):
        print(f"\n{label} (median [q25, q75] over seeds x test states)\n" + analysis.norm_table(cfg, summary, label))
    print(f"\nruntime_seconds: {runtime:.1f}")
    for key, v in accuracy.items():
        print(f"accuracy cost: HELM {key} / Flat = {v['helm_over_flat']} (HELM {v['helm']}, Flat {v['flat']})")
    return finish(cfg, criteria, plots + [path], runtime)


if __name__ == "__main__":
    sys.exit(main())
