"""Experiment 2, funnel heatmap: does mollification turn a rugged learned energy into a funnel?

    python run_experiment.py               # 3 seeds: Flat, HELM and the other HF form, all landscapes, plots
    python run_experiment.py --quick       # smoke run (writes to runs/, never to the committed findings)
    python run_experiment.py --plots-only  # redraw every plot from the saved results, no training
    python sweep.py                        # the tuning-seed sweep over hf_noise_sigma and lambda_hf
"""

from __future__ import annotations

import sys

from common.cli import command, read_json, read_npz
from common.cli_parse import parse
from common.config import Exp2Config
from common.runs import StagedOutputs, Timer, finish, seed_everything, setup_torch, write_npz, write_results
from exp2_funnel_heatmap.energy_functions import Landscape
from exp2_funnel_heatmap.training import specs_for_run, train_or_load
from exp2_funnel_heatmap.visualize_heatmap import (analyze, criteria_rows, criteria_spread, make_plots, plot_sweep,
                                                   summarize)

PROG = "exp2_funnel_heatmap/run_experiment.py"


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
