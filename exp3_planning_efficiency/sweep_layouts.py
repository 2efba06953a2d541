"""Layout-count sweep of Experiment 3: how many training layouts does transfer need?

    python sweep_layouts.py [--quick] [--jobs 2] [any Exp3Config flag]
        -> results/layout_sweep.json, plots/exp3_layout_sweep.png
    (run_experiment.py --plots-only redraws its figure too, from the saved json)

For each number of training layouts n in `layout_sweep` (default 10 / 100 / 1000, the first n of
the training-layout stream, so the sets are nested) the networks of the first `layout_sweep_seeds`
seeds are trained with the same total number of random walks (num_train_layouts x walks_per_layout,
so walks_per_layout = total / n: the sweep varies layout diversity, not data size), and HELM, HELM
without coarse level, CEM and the BFS reference are evaluated on the unseen-layouts track (the same
test layouts and tasks as the main run). The n = 100 point has the main run's data but only HELM's
networks, trained in its own unit (the main run's unit also trains the ablations' networks).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from common.cli import command
from common.cli_parse import parse
from common.config import Exp3Config
from common.runs import StagedOutputs, Timer, setup_torch, write_json
from exp3_planning_efficiency import analyze_planning, plots
from exp3_planning_efficiency.units import layout_sets, run_units

PROG = "exp3_planning_efficiency/sweep_layouts.py"
PLANNERS = ["helm", "helm_no_coarse", "cem", "bfs"]


def point_config(base, n: int):
    """The unit config of the sweep point with n training layouts (checkpoints under the sweep's folder)."""
    total = base.num_train_layouts * base.walks_per_layout
    return dataclasses.replace(base, num_train_layouts=n, walks_per_layout=max(1, total // n), planners=PLANNERS,
                               tracks=["unseen-layouts"], budget_scales=[], jobs=1,
                               out_dir=str(base.output_dir() / "checkpoints" / "layout_sweep" / f"layouts{n}"))


def mean_quality(models) -> dict:
    """Mean over seeds of the quality numbers the figure shows (diverged networks have none: NaN)."""
    rows = [(m["quality"].get("spectral", {}).get("k_step_accuracy", {}), m["quality"].get("hf", {})) for m in models]
    def mean(values):
        return float(np.mean([v if v is not None else np.nan for v in values]))
    return {"coarse_step_exact": mean([acc.get("coarse") for acc, _ in rows]),
            "eight_steps_exact": mean([acc.get(8, acc.get("8")) for acc, _ in rows]),
            "energy_spearman": mean([e.get("spearman") for _, e in rows])}


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    base = parse(Exp3Config, argv, prog=PROG, redraws=False)
    staged = StagedOutputs(base.output_dir())
    timer, device = Timer(), setup_torch(base)
    seeds = base.seeds[:base.layout_sweep_seeds]
    tests = [layout_sets(point_config(base, n))["test"] for n in base.layout_sweep]
    assert all(t == tests[0] for t in tests), "the test layouts must not depend on the number of training layouts"
    units = [(point_config(base, n), seed, "layouts") for n in base.layout_sweep for seed in seeds]
    results = run_units(base, units, device)
    points = []
    for i, n in enumerate(base.layout_sweep):
        per_seed = {(seed, "layouts"): results[i * len(seeds) + j] for j, seed in enumerate(seeds)}
        summary = analyze_planning.summarize(per_seed, units[i * len(seeds)][0])
        points.append({"num_train_layouts": n, "walks_per_layout": units[i * len(seeds)][0].walks_per_layout,
                       "success": summary["tracks"]["unseen-layouts"]["success"],
                       "quality": mean_quality(summary["models"].values()), "models": summary["models"]})
        print(f"{n:>5} layouts:", {p: {T: round(r["success"], 2) for T, r in rows.items()}
                                   for p, rows in points[-1]["success"].items()}, flush=True)
    saved = {"seeds": seeds, "points": points, "runtime_seconds": timer.seconds()}
    write_json(staged.results / "layout_sweep.json", saved)
    plots.plot_layout_sweep(saved, staged.plots / "exp3_layout_sweep.png")
    print("\n".join(f"wrote {p}" for p in staged.publish()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
