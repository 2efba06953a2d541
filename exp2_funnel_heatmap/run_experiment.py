"""Experiment 2, funnel heatmap: does mollification turn a rugged learned energy into a funnel?

    python run_experiment.py            # 3 seeds: Flat, HELM and the other HF form, all landscapes, plots
    python run_experiment.py --quick    # smoke run
    python sweep.py                     # the tuning-seed sweep over hf_noise_sigma and lambda_hf
"""

from __future__ import annotations

import io
import sys

import numpy as np

from common.config import Exp2Config, parse
from common.runs import (Timer, atomic_write_bytes, criterion, finish, prepare_output_dir, read_json, seed_everything,
                         setup_torch, write_results)
from exp2_funnel_heatmap.energy_functions import Landscape
from exp2_funnel_heatmap.training import specs_for_run, train_or_load
from exp2_funnel_heatmap.visualize_heatmap import analyze, make_plots, summarize


def criteria_rows(m: dict) -> list:
    cov, spur = m["coverage"], m["spurious_minima"]
    helm, flat, moll = cov["helm"]["mean"], cov["flat"]["mean"], cov["mollified"]["mean"]
    floor = 1.0 / m["num_basin_starts"]  # a 0 % Flat counts as one start, so the ratio stays finite
    return [
        criterion("HELM basin coverage (mean over seeds)", "> 60 %", 100 * helm, lambda v: v > 60),
        criterion("Flat basin coverage (mean over seeds)", "<= 20 %", 100 * flat, lambda v: v <= 20),
        criterion("HELM / Flat coverage", ">= 4x", helm / max(flat, floor), lambda v: v >= 4),
        criterion("HELM spurious minima (worst seed)", "<= 2", max(spur["helm"]["per_seed"]), lambda v: v <= 2),
        criterion("Flat spurious minima (fewest, over seeds)", ">= 8", min(spur["flat"]["per_seed"]), lambda v: v >= 8),
        criterion("|HELM - exact mollified| coverage", "<= 10 points", 100 * abs(helm - moll), lambda v: v <= 10),
    ]


def main(argv=None) -> int:
    cfg = parse(Exp2Config, argv, prog="run_experiment.py")
    device = setup_torch(cfg)
    prepare_output_dir(cfg)  # a different config's results are moved to previous/, never overwritten
    timer = Timer()
    seed_everything(cfg.seeds[0])  # all randomness below uses explicit per-model generators
    out = cfg.output_dir()
    specs = [s for seed in cfg.seeds for s in specs_for_run(cfg, seed)]
    model, final_loss = train_or_load(specs, cfg, device, out / "checkpoints")
    names = [s.name for s in specs_for_run(cfg, cfg.seeds[0])]
    arrays = analyze(model, names, cfg.seeds, Landscape.from_config(cfg), cfg, device)
    save_arrays(out / "results" / "exp2_arrays.npz", arrays)
    metrics = summarize(arrays, final_loss.numpy().reshape(len(cfg.seeds), len(names)))
    sweep_path = out / "results" / "sweep.json"
    metrics["sweep"] = read_json(sweep_path) if sweep_path.exists() else "not run (python sweep.py)"
    plots = make_plots(arrays, out / "plots")
    criteria = criteria_rows(metrics)
    runtime = timer.seconds()
    metrics_path = write_results(cfg, "exp2_funnel_heatmap", metrics, criteria, runtime, device)
    print_table(metrics)
    return finish(cfg, criteria, [metrics_path, *plots], runtime)


def save_arrays(path, arrays: dict) -> None:
    """Atomically write the analysis arrays (the plots are rebuilt from this file)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def print_table(m: dict) -> None:
    print(f"\n{'landscape':<28}{'coverage %':>20}{'spurious minima':>18}{'RMSE to E* / A':>16}")
    for name, c in m["coverage"].items():
        fit = m["fit_error"].get(name)
        rmse = f"{fit['rmse_to_true_over_A']['mean']:.3f}" if fit else "-"
        s = m["spurious_minima"][name]
        print(f"{name:<28}{100 * c['mean']:>12.1f} +- {100 * c['std']:<4.1f}{s['mean']:>12.1f} +- {s['std']:<4.1f}{rmse:>12}")


if __name__ == "__main__":
    sys.exit(main())
