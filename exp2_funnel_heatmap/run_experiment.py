"""Experiment 2, funnel heatmap: does mollification turn a rugged learned energy into a funnel?

    python run_experiment.py               # 3 seeds: Flat, HELM and the other HF form, all landscapes, plots
    python run_experiment.py --quick       # smoke run (writes to runs/, never to the committed findings)
    python run_experiment.py --plots-only  # redraw every plot from the saved results, no training
    python sweep.py                        # the tuning-seed sweep over hf_noise_sigma and lambda_hf
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.cli import command, read_json, read_npz
from common.cli_parse import parse
from common.config import Exp2Config
from common.runs import run_or_redraw, seed_everything, write_npz
from exp2_funnel_heatmap.energy_functions import Landscape
from exp2_funnel_heatmap.training import specs_for_run, train_or_load
from exp2_funnel_heatmap.analyze_heatmap import analyze, criteria, criteria_spread, format_tables, summarize
from exp2_funnel_heatmap.plots import make_plots, plot_sweep

PROG = "exp2_funnel_heatmap/run_experiment.py"


def measure(cfg, device, results: Path) -> tuple[dict, list, dict]:
    """Train (or resume) every model of every seed and analyse all landscapes: (metrics, criteria,
    arrays), the arrays saved to `results`/exp2_arrays.npz."""
    sweep_path = cfg.output_dir() / "results" / "sweep.json"  # read first: an unreadable one stops the run here
    sweep = read_json(sweep_path) if sweep_path.exists() else "not run (python sweep.py)"
    seed_everything(cfg.seeds[0])  # all randomness below uses named per-model streams
    specs = [s for seed in cfg.seeds for s in specs_for_run(cfg, seed)]
    model, final_loss, curves = train_or_load(specs, cfg, device, cfg.output_dir() / "checkpoints")
    names = [s.name for s in specs_for_run(cfg, cfg.seeds[0])]
    arrays = analyze(model, names, cfg.seeds, Landscape.from_config(cfg), cfg, device)
    arrays["final_loss"] = final_loss.numpy().reshape(len(cfg.seeds), len(names))
    arrays["loss_curves"] = curves.numpy().reshape(len(cfg.seeds), len(names), -1)
    write_npz(results / "exp2_arrays.npz", arrays)
    metrics = summarize(arrays, arrays["final_loss"])
    metrics["sweep"] = sweep
    metrics["criteria_per_seed"] = criteria_spread(metrics, cfg.seeds)
    return metrics, criteria(metrics), arrays


@command(PROG)
def main(argv=None) -> int:
    cfg = parse(Exp2Config, argv, prog=PROG)
    return run_or_redraw(cfg, "exp2_funnel_heatmap", measure, report=lambda cfg, metrics: format_tables(metrics),
                         plot=lambda cfg, arrays, metrics_path, plot_dir: make_plots(arrays, plot_dir),
                         saved=lambda cfg: (cfg, read_npz(cfg.output_dir() / "results" / "exp2_arrays.npz")),
                         sweeps={"sweep.json": lambda sweep, plot_dir: plot_sweep(sweep, plot_dir / "exp2_sweep.png")})


if __name__ == "__main__":
    sys.exit(main())
