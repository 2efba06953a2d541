"""Experiment 2, funnel heatmap: does mollification turn a rugged learned energy into a funnel?

    python run_experiment.py               # 3 seeds: Flat, HELM and the other HF form, all landscapes, plots
    python run_experiment.py --quick       # smoke run (writes to runs/, never to the committed findings)
    python run_experiment.py --plots-only  # redraw every plot from the saved results, no training
    python sweep.py                        # the tuning-seed sweep over hf_noise_sigma and lambda_hf
"""

from __future__ import annotations

import sys

import numpy as np

from common.cli import command, read_json, read_npz
from common.cli_parse import parse
from common.config import Exp2Config
from common.runs import (StagedOutputs, Timer, criterion, finish, seed_everything, setup_torch, write_npz,
                         write_results)
from exp2_funnel_heatmap.energy_functions import Landscape
from exp2_funnel_heatmap.sweep import plot_sweep
from exp2_funnel_heatmap.training import specs_for_run, train_or_load
from exp2_funnel_heatmap.visualize_heatmap import analyze, make_plots, summarize

PROG = "exp2_funnel_heatmap/run_experiment.py"


def criteria_rows(m: dict, seed_index: int | None = None) -> list:
    """The criteria over all seeds (means, worst seed), or on one seed alone (`seed_index`)."""
    def per_seed(group: dict, name: str) -> list:
        values = group[name]["per_seed"]
        return values if seed_index is None else [values[seed_index]]

    def mean(name: str):
        values = [v for v in per_seed(m["coverage"], name) if v is not None and np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    helm, flat, moll = mean("helm"), mean("flat"), mean("mollified")
    floor = 1.0 / m["num_basin_starts"]  # a 0 % Flat counts as one start, so the ratio stays finite
    spur_helm, spur_flat = per_seed(m["spurious_minima"], "helm"), per_seed(m["spurious_minima"], "flat")
    return [
        criterion("HELM basin coverage (mean over seeds)", "> 60 %", 100 * helm, lambda v: v > 60),
        criterion("Flat basin coverage (mean over seeds)", "<= 20 %", 100 * flat, lambda v: v <= 20),
        criterion("HELM / Flat coverage", ">= 4x", helm / max(flat, floor), lambda v: v >= 4),
        criterion("HELM spurious minima (worst seed)", "<= 2", max(spur_helm), lambda v: v <= 2),
        criterion("Flat spurious minima (fewest, over seeds)", ">= 8", min(spur_flat), lambda v: v >= 8),
        criterion("|HELM - exact mollified| coverage", "<= 10 points", 100 * abs(helm - moll), lambda v: v <= 10),
        criterion("HELM basin coverage (worst seed)", ">= 90 %", 100 * min(per_seed(m["coverage"], "helm")),
                  lambda v: v >= 90),
    ]


def criteria_spread(m: dict, seeds: list[int]) -> list[dict]:
    """Each criterion evaluated on every seed alone: median and worst measurement, seeds passing
    ("worst" is the lowest value for a ">" target, the highest for a "<" one)."""
    per_seed = [criteria_rows(m, i) for i in range(len(seeds))]
    spread = []
    for j, row in enumerate(per_seed[0]):
        measured = np.array([np.nan if rows[j].measured is None else rows[j].measured for rows in per_seed])
        finite = measured[np.isfinite(measured)]  # a diverged model has no measurement
        worst = (finite.min() if row.target.startswith(">") else finite.max()) if finite.size else None
        spread.append({"name": row.name, "target": row.target,
                       "median": float(np.median(finite)) if finite.size else None,
                       "worst": None if worst is None else float(worst),
                       "seeds_passing": sum(rows[j].passed for rows in per_seed), "seeds": len(seeds),
                       "failing_seeds": [s for s, rows in zip(seeds, per_seed) if not rows[j].passed],
                       "per_seed": measured.tolist()})
    return spread


def measure(cfg, device) -> dict:
    """Train (or resume) every model of every seed and analyse all landscapes; the saved arrays."""
    seed_everything(cfg.seeds[0])  # all randomness below uses named per-model streams
    specs = [s for seed in cfg.seeds for s in specs_for_run(cfg, seed)]
    model, final_loss, curves = train_or_load(specs, cfg, device, cfg.output_dir() / "checkpoints")
    names = [s.name for s in specs_for_run(cfg, cfg.seeds[0])]
    arrays = analyze(model, names, cfg.seeds, Landscape.from_config(cfg), cfg, device)
    arrays["final_loss"] = final_loss.numpy().reshape(len(cfg.seeds), len(names))
    arrays["loss_curves"] = curves.numpy().reshape(len(cfg.seeds), len(names), -1)
    return arrays


@command(PROG)
def main(argv=None) -> int:
    cfg = parse(Exp2Config, argv, prog=PROG)
    device = setup_torch(cfg)
    timer, out = Timer(), cfg.output_dir()
    staged = StagedOutputs(out)
    sweep_path = out / "results" / "sweep.json"
    sweep = read_json(sweep_path) if sweep_path.exists() else None
    if cfg.plots_only:
        arrays = read_npz(out / "results" / "exp2_arrays.npz")
    else:
        arrays = measure(cfg, device)
        write_npz(staged.results / "exp2_arrays.npz", arrays)
        metrics = summarize(arrays, arrays["final_loss"])
        metrics["sweep"] = sweep if sweep is not None else "not run (python sweep.py)"
        criteria = criteria_rows(metrics)
        metrics["criteria_per_seed"] = criteria_spread(metrics, cfg.seeds)
        write_results(cfg, staged.results, "exp2_funnel_heatmap", metrics, criteria, timer.seconds(), device)
        print_table(metrics)
        print_spread(metrics["criteria_per_seed"])
    make_plots(arrays, staged.plots)
    if sweep is not None:
        plot_sweep(sweep, staged.plots / "exp2_sweep.png")
    outputs = staged.publish()
    if cfg.plots_only:
        print("\n".join(f"wrote {p}" for p in outputs))
        return 0
    return finish(cfg, criteria, outputs, timer.seconds())


def print_spread(spread: list[dict]) -> None:
    print(f"\neach criterion on each seed alone ({spread[0]['seeds']} seeds)")
    print(f"{'criterion':<44}{'target':>14}{'median':>10}{'worst':>10}{'seeds passing':>15}")
    def show(v):
        return "n/a" if v is None else f"{v:.4g}"
    for row in spread:
        print(f"{row['name']:<44}{row['target']:>14}{show(row['median']):>10}{show(row['worst']):>10}"
              f"{row['seeds_passing']:>9} / {row['seeds']}")


def print_table(m: dict) -> None:
    print(f"\n{'landscape':<28}{'coverage %':>20}{'spurious minima':>18}{'RMSE to E* / A':>16}")
    for name, c in m["coverage"].items():
        fit = m["fit_error"].get(name)
        rmse = f"{fit['rmse_to_true_over_A']['mean']:.3f}" if fit else "-"
        s = m["spurious_minima"][name]
        print(f"{name:<28}{100 * c['mean']:>12.1f} +- {100 * c['std']:<4.1f}"
              f"{s['mean']:>12.1f} +- {s['std']:<4.1f}{rmse:>12}")


if __name__ == "__main__":
    sys.exit(main())
