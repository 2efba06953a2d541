"""Tuning sweep of Experiment 3 on the tuning seed only (never a reported seed).

    python tune.py [--quick] [any Exp3Config flag]   -> results/tuning.json

Each variant changes the given config (the defaults unless flags say otherwise); models and
evaluations are checkpointed (resumable) under checkpoints/tuning/. The defaults were chosen from this
table: the variant with the highest mean HELM success over the horizons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

from common.config import Exp3Config, parse
from common.runs import StagedOutputs, Timer, setup_torch, write_json
from exp3_planning_efficiency import analyze_planning
from exp3_planning_efficiency.env_minigrid import FastMaze
from exp3_planning_efficiency.run_experiment import run_seed, unit_config

# name -> (change to the default config, planners evaluated). Variants with the same model fields share
# one trained model (checkpoints/tuning/models_<hash>/); each variant keeps its own evaluations.
VARIANTS = {
    "default": ({}, None),
    "helm_top_k_8": ({"helm_top_k": 8}, ["helm"]),
    "helm_top_k_27": ({"helm_top_k": 27}, ["helm"]),
    "helm_coarse_depth_2": ({"helm_coarse_depth": 2}, ["helm"]),
    "helm_coarse_depth_2_top_k_8": ({"helm_coarse_depth": 2, "helm_top_k": 8}, ["helm"]),
    "no_snapping": ({"snap_latents": False}, ["helm", "cem"]),
    "mollification_0.3": ({"hf_noise_sigma": 0.3}, ["helm"]),
    "mollification_1.0": ({"hf_noise_sigma": 1.0}, ["helm"]),
    "no_snapping_mollification_0.3": ({"snap_latents": False, "hf_noise_sigma": 0.3}, ["helm"]),
}


def model_dir(cfg, tuning_dir: Path) -> Path:
    fields = json.dumps(unit_config(cfg, cfg.tuning_seed, "model"), sort_keys=True)
    return tuning_dir / f"models_{hashlib.sha1(fields.encode()).hexdigest()[:10]}"


def main(argv: list[str] | None = None) -> int:
    base = parse(Exp3Config, argv, prog="exp3_planning_efficiency/tune.py")
    base = dataclasses.replace(base, out_dir=str(base.output_dir()))  # variants write where the base config does
    device = setup_torch(base)
    staged = StagedOutputs(base.output_dir())
    timer = Timer()
    maze = FastMaze(base.env_id)
    cell_dist = maze.cell_distances()
    table = {}
    tuning_dir = base.output_dir() / "checkpoints" / "tuning"
    for name, (change, planners) in VARIANTS.items():
        cfg = dataclasses.replace(base, **change, planners=planners or base.planners)
        result = run_seed(cfg, base.tuning_seed, maze, cell_dist, device, model_dir(cfg, tuning_dir), tuning_dir / name)
        tuning_cfg = dataclasses.replace(cfg, seeds=[base.tuning_seed])
        success = analyze_planning.aggregate({base.tuning_seed: result}, tuning_cfg)
        table[name] = {"change": change, "world_model": result["quality"], "success": success}
        print(name, {p: [rows[str(T)]["success"] for T in cfg.planning_horizons] for p, rows in success.items()},
              flush=True)
    write_json(staged.results / "tuning.json",
               {"tuning_seed": base.tuning_seed, "variants": table, "runtime_seconds": timer.seconds()})
    for path in staged.publish():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
