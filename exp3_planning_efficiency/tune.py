"""Tuning sweep of Experiment 3: the tuning seed, trained on the training layouts, evaluated on the
tuning layouts (disjoint from the test layouts, which nothing here sees).

    python tune.py [--quick] [any Exp3Config flag]   -> results/tuning.json

Each variant changes the given config (the defaults unless flags say otherwise) and evaluates HELM,
HELM without coarse level and CEM on the unseen-layouts protocol. Networks are checkpointed under
checkpoints/tuning/models_<hash of the model fields>/ and shared by the variants that only change
planning knobs (resumable). The defaults were chosen
from this table by the rule fixed before the sweep: the variant with the highest mean HELM success
over T = 50 and 80.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys

from common.config import Exp3Config, identity, parse
from common.runs import StagedOutputs, Timer, setup_torch, write_json
from exp3_planning_efficiency import analyze_planning
from exp3_planning_efficiency.run_experiment import run_unit

PLANNERS = ["helm", "helm_no_coarse", "cem"]
VARIANTS = {  # name -> change to the base config (planning knobs of HELM: they share the trained networks)
    "default": {},
    "coarse_horizon_5": {"coarse_horizon": 5},
    "coarse_horizon_20": {"coarse_horizon": 20},
    "helm_fine_samples_256": {"helm_fine_samples": 256},
}


def main(argv: list[str] | None = None) -> int:
    base = parse(Exp3Config, argv, prog="exp3_planning_efficiency/tune.py")
    base = dataclasses.replace(base, out_dir=str(base.output_dir()))  # variants write where the base config does
    device = setup_torch(base)
    staged = StagedOutputs(base.output_dir())
    timer, table = Timer(), {}
    for name, change in VARIANTS.items():
        cfg = dataclasses.replace(base, **change, planners=PLANNERS, tracks=["unseen-layouts"],
                                  seeds=[base.tuning_seed], budget_scales=[])
        models = hashlib.sha1(json.dumps(identity(cfg, "model"), sort_keys=True).encode()).hexdigest()[:10]
        unit = run_unit(cfg, base.tuning_seed, "layouts", device, eval_layouts="tuning",
                        checkpoints=base.output_dir() / "checkpoints" / "tuning" / f"models_{models}")
        summary = analyze_planning.summarize({(base.tuning_seed, "layouts"): unit}, cfg)
        track = summary["tracks"].get("unseen-layouts", {"success": {}})
        table[name] = {"change": change, "models": summary["models"], "success": track["success"]}
        print(name, {p: {T: round(r["success"], 3) for T, r in rows.items()} for p, rows in track["success"].items()},
              flush=True)
    write_json(staged.results / "tuning.json",
               {"tuning_seed": base.tuning_seed, "variants": table, "runtime_seconds": timer.seconds()})
    for path in staged.publish():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
