"""The reach map of Experiment 3: success at T = 50 and 80 against how far the goal energy sees, for
every planner, on the unseen test layouts, with HELM's paired gain over each flat planner.

    python reach_map.py [--quick] [--jobs 2] [any Exp3Config flag]
        -> results/reach_map.json, results/exp3_reach_map_arrays.npz, plots/exp3_reach_map.png,
           plots/exp3_reach_map_budgets.png

The energies, from short-sighted to whole maze (`ENERGIES`): `local` (an embedding distance whose
nodes see 5 x 5 cells, `energy_family local`), the propagated energy cut at 8 and at 16 Bellman-Ford
sweeps when planning (`energy_reach`: it sees that many steps from the goal, one flat value beyond),
and the propagated energy converged (the whole maze). Each seed of `map_seeds` trains one world model
and both energy families on the training layouts (the reach is a planning setting, so one propagated
network serves three points), then every planner runs the seed's same `map_episodes` tasks per T at
every point, so differences between planners and between energies are paired. At the local energy
every planner also runs at two more budgets (`BUDGETS`), and HELM is compared with the best flat
planner at its largest budget, which must plan at least as long as HELM (`matched_comparison`). Seeds
run as units (`--jobs`); networks and evaluations are checkpointed under checkpoints/map/ and resume.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from common.cli import command
from common.cli_parse import parse
from common.config import Exp3Config
from common.fields import identity
from common.launch import Unit, launch
from common.runs import StagedOutputs, Timer, criterion, finish, numpy_rng, setup_torch, write_json, write_npz
from exp3_planning_efficiency import analyze_planning, plots
from exp3_planning_efficiency.compute import call_macs
from exp3_planning_efficiency.env_minigrid import Replay
from exp3_planning_efficiency.evaluation import evaluate_track
from exp3_planning_efficiency.paired import paired_difference
from exp3_planning_efficiency.training import build_energy, build_world_model, load_networks, load_or_train_unit
from exp3_planning_efficiency.units import TRACK_KEYS, layout_sets, mazes_of

PROG = "exp3_planning_efficiency/reach_map.py"
ENERGIES = {"local": {"energy_family": "local"}, "reach_8": {"energy_reach": 8}, "reach_16": {"energy_reach": 16},
            "whole_maze": {"energy_reach": 0}}  # name -> change to the config, shortest-sighted first
HORIZONS = [50, 80]
PLANNERS = ["helm", "helm_no_coarse", "cem", "flat", "random"]
FLAT = analyze_planning.FLAT_PLANNERS
BUDGET_ENERGY = "local"  # the energy of the compute-matched comparison (the criteria's)
BUDGETS = {"helm": (0.25, 0.5), "helm_no_coarse": (2.0, 4.0), "cem": (4.0, 16.0), "flat": (0.5, 2.0)}
"""Extra budgets (x each planner's samples or gradient steps) at BUDGET_ENERGY, so that every planner's
three budgets span the same range of planning seconds and each flat planner's largest plans at least as
long as HELM: a planner's seconds grow more slowly than its samples (fixed costs per step), HELM plans
about 2x longer than HELM without its coarse level at 1024 samples and 5-7x longer than CEM at horizon
8 (tuning seed, `results/tuning_flat.json` and `tuning_coarse.json`), and the gradient planner at x1
about as long as HELM, at half its multiply-adds."""


def map_config(cfg) -> Exp3Config:
    """The run's config as the map's units use it: the test layouts, T = 50 and 80, `map_episodes` tasks."""
    return dataclasses.replace(cfg, tracks=["unseen-layouts"], planners=PLANNERS, planning_horizons=HORIZONS,
                               num_eval_episodes=cfg.map_episodes, budget_scales=[], energy_family="propagated",
                               energy_reach=0)


def map_unit(cfg, seed: int, device) -> dict:
    """One seed: its world model and propagated energy, its local energy, every planner at every energy."""
    cfg = map_config(cfg)
    checkpoints = cfg.output_dir() / "checkpoints" / "map"
    sets = layout_sets(cfg)
    train = mazes_of("spanning", sets["train"], distances=False)[0]
    mazes, dists = mazes_of("spanning", sets["test"])
    layouts = f"test/{len(mazes)}"

    def replay():
        return Replay(train, cfg.walks_per_layout, cfg.walk_length, numpy_rng(seed, "exp3-walks"))

    local_cfg = dataclasses.replace(cfg, energy_family="local")
    propagated = load_or_train_unit(cfg, seed, "layouts", replay, mazes, dists, layouts, ("spectral", "hf"), device,
                                    checkpoints)
    local = load_or_train_unit(local_cfg, seed, "layouts", replay, mazes, dists, layouts, ("hf",), device,
                               checkpoints / "local")
    nets = load_networks(cfg, propagated, device)
    local_nets = {"spectral": nets["spectral"], **load_networks(local_cfg, local, device)}
    out = {"quality": {"world_model": propagated["quality"].get("spectral"),
                       "propagated": propagated["quality"].get("hf"), "local": local["quality"].get("hf")},
           "diverged": propagated["diverged"] + [f"local_{name}" for name in local["diverged"]],
           "training_seconds": {**propagated["seconds"], "local_hf": local["seconds"].get("hf")}, "energies": {}}
    for name, change in ENERGIES.items():
        run_cfg = dataclasses.replace(cfg, **change)
        is_local = name == "local"
        diverged = bool(local["diverged"]) if is_local else bool(propagated["diverged"])
        if diverged:
            continue  # a diverged network's rows stay missing (recorded in "diverged")
        models = {"world_model": propagated["unit_config"], "energy": local["unit_config"]} if is_local \
            else propagated["unit_config"]

        def evaluate(run_cfg, planners):
            return evaluate_track(run_cfg, seed, "unseen-layouts", TRACK_KEYS["unseen-layouts"],
                                  local_nets if is_local else nets, models, layouts, mazes, dists, planners,
                                  checkpoints, device)

        out["energies"][name] = evaluate(run_cfg, PLANNERS)["success"]
        if name == BUDGET_ENERGY:  # the same units at scale 1 come from their checkpoints
            out["budgets"] = {planner: evaluate(dataclasses.replace(run_cfg, budget_scales=list(scales)),
                                                [planner])["pareto"][planner] for planner, scales in BUDGETS.items()}
    return out


def summarize(units: dict) -> tuple[dict, dict]:
    """Per energy, planner and T: success pooled over seeds, per-seed success, seconds and MACs per
    episode; HELM minus each flat planner as paired differences. -> (summary, outcome arrays)."""
    seeds = sorted(units)
    table, outcomes = {}, {}
    for name in ENERGIES:
        if not all(name in units[s]["energies"] for s in seeds):
            continue
        rows = {}
        for planner in PLANNERS:
            for T in map(str, HORIZONS):
                runs = [units[s]["energies"][name][planner].get(T) for s in seeds]
                if all(r is not None for r in runs):
                    rows.setdefault(planner, {})[T] = pooled_row(runs, outcomes, f"success_{name}_{planner}_T{T}")
        paired = {T: {p: paired_difference(outcomes[f"success_{name}_helm_T{T}"], outcomes[f"success_{name}_{p}_T{T}"])
                      for p in FLAT if f"success_{name}_{p}_T{T}" in outcomes}
                  for T in map(str, HORIZONS) if f"success_{name}_helm_T{T}" in outcomes}
        table[name] = {"success": rows, "paired": paired}
    if BUDGET_ENERGY in table and all("budgets" in units[s] for s in seeds):
        table[BUDGET_ENERGY]["budgets"] = budgets = {
            planner: {f"{scale:g}": {T: pooled_row([units[s]["budgets"][planner][scale][T] for s in seeds], outcomes,
                                                f"success_{BUDGET_ENERGY}_{planner}_x{scale:g}_T{T}")
                                     for T in map(str, HORIZONS)}
                      for scale in scales} for planner, scales in BUDGETS.items()}
        table[BUDGET_ENERGY]["matched"] = {T: matched_comparison(table[BUDGET_ENERGY], budgets, outcomes, T)
                                           for T in map(str, HORIZONS)}
    return table, outcomes


def pooled_row(runs: list[dict], outcomes: dict, key: str) -> dict:
    """One planner's runs at one point, one per seed: success pooled and per seed, seconds and MACs per
    episode; its outcomes (seeds, tasks) go to outcomes[key]."""
    success = np.stack([np.asarray(r["success"], dtype=bool) for r in runs])  # (seeds, tasks)
    outcomes[key] = success.astype(np.uint8)
    return {"success": float(success.mean()), "success_per_seed": success.mean(1).tolist(),
            "seconds_per_episode": float(np.mean([r["plan_seconds_per_episode"] for r in runs])),
            "macs_per_episode": float(np.mean([np.mean(r["macs"]) for r in runs])), "episodes": int(success.size)}


def matched_comparison(entry: dict, budgets: dict, outcomes: dict, T: str) -> dict:
    """HELM (its default budget) against the most successful flat planner at its largest budget (chosen by
    budget, not by measured seconds, so the choice does not depend on timing); the paired difference on the
    same tasks, and whether that planner planned at least as long as HELM per episode."""
    helm_seconds = entry["success"]["helm"][T]["seconds_per_episode"]
    candidates = []
    for planner in FLAT:
        scale = max([1.0, *map(float, budgets[planner])])
        row = entry["success"][planner][T] if scale == 1.0 else budgets[planner][f"{scale:g}"][T]
        candidates.append((row["success"], planner, scale, row["seconds_per_episode"]))
    _, planner, scale, seconds = max(candidates)
    rival = f"success_{BUDGET_ENERGY}_{planner}_T{T}" if scale == 1.0 \
        else f"success_{BUDGET_ENERGY}_{planner}_x{scale:g}_T{T}"
    return {"rival": planner, "rival_scale": scale, "rival_seconds_per_episode": seconds,
            "helm_seconds_per_episode": helm_seconds, "at_least_helms_seconds": seconds >= helm_seconds,
            **paired_difference(outcomes[f"success_{BUDGET_ENERGY}_helm_T{T}"], outcomes[rival])}


def criteria(table: dict) -> list:
    """The stage's targets on the test layouts (missing data, or a condition not met, FAILs)."""
    local, whole = table.get("local", {"success": {}}), table.get("whole_maze", {"success": {}})
    def helm(entry, T):
        return entry["success"].get("helm", {}).get(str(T), {}).get("success")
    rows = []
    for T in HORIZONS:
        matched = local.get("matched", {}).get(str(T))
        fair = matched is not None and matched["at_least_helms_seconds"] and matched["ci95"][0] > 0
        rows.append(criterion(f"local energy: HELM minus the best flat planner at its largest budget at T={T} (paired "
                              "95 % CI above 0; that planner plans at least as long as HELM)", ">= 0.25",
                              matched and matched["difference"],
                              lambda m, fair=fair: fair and m >= 0.25))
    rows += [criterion(f"local energy: HELM success at T={T}", f">= {target:.2f}", helm(local, T),
                       lambda m, target=target: m >= target) for T, target in zip(HORIZONS, (0.6, 0.5))]
    return rows + [criterion("propagated energy (whole maze): HELM success at T=50", ">= 0.80", helm(whole, 50),
                             lambda m: m >= 0.8)]


def format_table(table: dict) -> str:
    lines = ["energy      T   " + "  ".join(f"{p:>15s}" for p in PLANNERS) + "   HELM - best flat [95% CI]"]
    for name, entry in table.items():
        for T in map(str, HORIZONS):
            cells = [entry["success"].get(p, {}).get(T) for p in PLANNERS]
            text = "  ".join(f"{c['success']:5.2f} {c['seconds_per_episode']:5.2f}s" if c else f"{'-':>15s}"
                             for c in cells)
            rival = analyze_planning.best_flat(entry, T)
            gain = entry["paired"].get(T, {}).get(rival)
            gain_text = f"{gain['difference']:+.2f} [{gain['ci95'][0]:+.2f}, {gain['ci95'][1]:+.2f}] vs {rival}" \
                if gain else "-"
            lines.append(f"{name:10s} {T:>3s}  {text}   {gain_text}")
    for T, m in table.get(BUDGET_ENERGY, {}).get("matched", {}).items():
        lines.append(f"{BUDGET_ENERGY} T={T}, matched seconds: HELM ({m['helm_seconds_per_episode']:.2f} s) minus "
                     f"{m['rival']} x{m['rival_scale']:g} ({m['rival_seconds_per_episode']:.2f} s): "
                     f"{m['difference']:+.2f} [{m['ci95'][0]:+.2f}, {m['ci95'][1]:+.2f}], "
                     f"McNemar p {m['mcnemar_p']:.3g}")
    return "\n".join(lines)


def per_call_macs(cfg, device) -> dict:
    """Multiply-adds of one call of each network on one 19 x 19 observation (`compute.call_macs`), per energy
    family (they do not depend on the weights)."""
    model = build_world_model(cfg, device)
    return {family: call_macs(model, build_energy(dataclasses.replace(cfg, energy_family=family), device), (19, 19),
                              device) for family in ("propagated", "local")}


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp3Config, argv, prog=PROG, redraws=False)
    cfg = dataclasses.replace(cfg, out_dir=str(cfg.output_dir()))  # the units write where the run does
    device = setup_torch(cfg)
    staged, timer = StagedOutputs(cfg.output_dir()), Timer()
    units = [Unit(f"map/seed{seed}", map_unit, (cfg, seed, device)) for seed in cfg.map_seeds]
    results = dict(zip(cfg.map_seeds, launch(cfg, units, cfg.output_dir() / "checkpoints" / "launcher",
                                             worker_processes=True)))
    table, outcomes = summarize(results)
    saved = {"seeds": cfg.map_seeds, "horizons": HORIZONS, "energies": table, "config": identity(cfg, "model", "eval"),
             "per_call_macs": per_call_macs(cfg, device),
             "models": {f"seed{s}": {k: r[k] for k in ("quality", "diverged", "training_seconds")}
                        for s, r in results.items()},
             "runtime_seconds": timer.seconds()}
    checks = criteria(table)
    saved["criteria"] = [dataclasses.asdict(c) for c in checks]
    write_json(staged.results / "reach_map.json", saved)
    write_npz(staged.results / "exp3_reach_map_arrays.npz", outcomes)
    plots.plot_reach_map(saved, staged.plots)
    print(format_table(table))
    return finish(cfg, checks, staged.publish(), timer.seconds())


if __name__ == "__main__":
    sys.exit(main())
