"""Experiment 3: random walks -> world models + goal energies -> planners on three tracks -> plots.

    python run_experiment.py [--quick] [--tracks unseen-layouts] [--seeds 0 1 2] [--jobs 2] ...  (see --help)
    python run_experiment.py --plots-only    # redraw every plot from the saved results, no training

Tracks: `unseen-layouts` (train on `num_train_layouts` spanning-tree mazes, evaluate on disjoint test
layouts), `limited-data` (one fixed maze, `limited_data_walks` random walks, evaluated on it) and
`fourrooms` (the unseen-layouts models zero-shot on MiniGrid-FourRooms-v0). The work is split into
units (seed x data source) run in `--jobs` processes; trained models and evaluations are checkpointed
with the config fields they depend on and skipped when a rerun would redo them identically.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from common.cli_parse import parse
from common.config import Exp3Config
from common.cli import command, read_npz
from common.launch import Unit, launch
from common.runs import (StagedOutputs, Timer, finish, numpy_rng, progress, read_json, setup_torch, write_npz,
                         write_results)
from exp3_planning_efficiency import analyze_planning
from exp3_planning_efficiency.env_minigrid import ENV_ID, FOURROOMS_ID, FastMaze, Replay, layout_split
from exp3_planning_efficiency.evaluation import NETWORKS, evaluate_track, usable_horizons
from exp3_planning_efficiency.training import load_networks, load_or_train_unit

FIXED_LAYOUT = 0  # the limited-data track's maze (stage one's fixed layout)
UNSEEN_ONLY = ("helm_no_spectral", "helm_no_hf", "flat")  # evaluated on the unseen-layouts track only (compute)
PROG = "exp3_planning_efficiency/run_experiment.py"
TRACK_KEYS = {"unseen-layouts": 0, "fourrooms": 1, "limited-data": 2, "tuning": 3}  # task streams


def layout_sets(cfg) -> dict:
    """Layout seeds: train, tuning and test spanning-tree mazes (disjoint) and FourRooms reset seeds."""
    train, tuning, test = layout_split(cfg.num_train_layouts, cfg.num_tuning_layouts, cfg.num_test_layouts,
                                       cfg.layout_split_seed)
    fourrooms = numpy_rng(cfg.layout_split_seed, "exp3-fourrooms-layouts").integers(2**31,
                                                                                   size=cfg.num_fourrooms_layouts)
    return {"train": train, "tuning": tuning, "test": test, "fourrooms": [int(s) for s in fourrooms]}


def mazes_of(kind: str, seeds: list[int], distances: bool = True) -> tuple[list[FastMaze], list[np.ndarray]]:
    """The layouts and (unless `distances` is False: training layouts need none) their BFS cell distances."""
    mazes = [FastMaze(FOURROOMS_ID, reset_seed=s) if kind == "fourrooms" else FastMaze(ENV_ID, layout_seed=s)
             for s in seeds]
    return mazes, [m.cell_distances() for m in mazes] if distances else []


def data_sources(cfg) -> list[str]:
    sources = ["layouts"] if {"unseen-layouts", "fourrooms"} & set(cfg.tracks) else []
    return sources + ([f"fixed-{n}" for n in cfg.limited_data_walks] if "limited-data" in cfg.tracks else [])


def run_unit(cfg, seed: int, source: str, device, eval_layouts: str = "test", checkpoints: Path | None = None) -> dict:
    """Train (or load) one seed's networks on one data source and evaluate the tracks that use them.
    `eval_layouts` "tuning" evaluates the unseen-layouts track on the tuning layouts (tune.py).
    Checkpoints go to `checkpoints` (default: the output folder's checkpoints/)."""
    checkpoints = checkpoints or cfg.output_dir() / "checkpoints"
    sets = layout_sets(cfg)
    if source == "layouts":
        train = mazes_of("spanning", sets["train"], distances=False)[0]
        evals = {}
        if "unseen-layouts" in cfg.tracks:
            evals["unseen-layouts"] = mazes_of("spanning", sets[eval_layouts])
        if "fourrooms" in cfg.tracks and eval_layouts == "test":
            evals["fourrooms"] = mazes_of("fourrooms", sets["fourrooms"])
        def replay():
            return Replay(train, cfg.walks_per_layout, cfg.walk_length, numpy_rng(seed, "exp3-walks"))
    else:
        walks = int(source.split("-")[1])
        maze = FastMaze(ENV_ID, layout_seed=FIXED_LAYOUT)
        evals = {f"limited-data-{walks}": ([maze], [maze.cell_distances()])}
        def replay():
            return Replay([maze], walks, cfg.walk_length, numpy_rng(seed, "exp3-walks", walks))
    quality_track = next(iter(evals))
    quality_mazes, quality_dists = evals[quality_track]
    quality_layouts = f"{eval_layouts if quality_track == 'unseen-layouts' else quality_track}/{len(quality_mazes)}"
    planners = {track: [p for p in cfg.planners if track == "unseen-layouts" or p not in UNSEEN_ONLY]
                for track in evals}
    used = {p for names in planners.values() for p in names}
    variants = ("spectral", "hf") + (("no_spectral",) if "helm_no_spectral" in used else ()) \
        + (("no_hf",) if "helm_no_hf" in used else ())
    payload = load_or_train_unit(cfg, seed, source, replay, quality_mazes, quality_dists, quality_layouts, variants,
                                 device, checkpoints)
    result = {"quality": payload["quality"], "loss_curves": payload["loss_curves"], "diverged": payload["diverged"],
              "training_seconds": payload["seconds"], "tracks": {}}
    nets = load_networks(cfg, payload, device)
    for track in planners:  # a planner whose networks diverged is not evaluated (its rows stay missing)
        planners[track] = [p for p in planners[track]
                           if not set(NETWORKS.get(p, ("spectral", "hf"))) & set(result["diverged"])]
    for track, (mazes, dists) in evals.items():
        family = track.rsplit("-", 1)[0] if track.startswith("limited") else track
        key = TRACK_KEYS["tuning"] if eval_layouts == "tuning" else TRACK_KEYS[family]
        layouts = f"{eval_layouts if track == 'unseen-layouts' else track}/{len(mazes)}"
        result["tracks"][track] = evaluate_track(cfg, seed, track, key, nets, payload["unit_config"], layouts, mazes,
                                                 dists, planners[track], checkpoints, device)
    return result


def _init_worker(num_threads: int, parent: int) -> None:
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the main process `parent` is gone (killed by SIGTERM or SIGKILL, say),
    instead of training on as an orphan; finished units are in their checkpoints, so a rerun resumes.
    (`parent` is passed in, not read here: the main process may die before a worker starts.)"""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def run_units(cfg, units: list[tuple], device) -> list[dict]:
    """`run_unit(unit_cfg, seed, source, device)` for every (unit_cfg, seed, source) in `units`, by
    `cfg.launcher` (inline: in this process, or in `cfg.jobs` worker processes when jobs > 1). Units
    are independent, so the results are identical whichever ran them; only the wall time changes."""
    def name(unit_cfg, seed, source):
        return f"{source}{unit_cfg.num_train_layouts if source == 'layouts' else ''}/seed{seed}"
    named = [Unit(name(*unit), run_unit, (*unit, device)) for unit in units]
    return launch(cfg, named, cfg.output_dir() / "checkpoints" / "launcher", inline=lambda named: _inline(cfg, named))


def _inline(cfg, units: list[Unit]) -> list[dict]:
    if cfg.jobs == 1:
        return [unit.fn(*unit.args) for unit in progress(units, cfg.quiet, desc="units")]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.jobs, mp_context=context, initializer=_init_worker,
                             initargs=(cfg.num_threads, os.getpid())) as pool:
        futures = [pool.submit(unit.fn, *unit.args) for unit in units]
        return [future.result() for future in futures]


def run_all_units(cfg, device) -> dict:
    """Every (seed, data source) unit of the run -> {(seed, source): result}."""
    units = [(seed, source) for source in data_sources(cfg) for seed in cfg.seeds]
    return dict(zip(units, run_units(cfg, [(cfg, *unit) for unit in units], device)))


def unservable_horizon(cfg) -> str | None:
    """Why a planning horizon has no task (BFS distance in (T/2, T]), or None: called by
    `Exp3Config.validate`, so `--dry-run` and every script refuse it before any work. Each horizon needs
    tasks on the layouts of the unseen-layouts track (its first 10 test and tuning layouts, to stay
    fast) and of the limited-data track. FourRooms keeps the horizons it has tasks for, so when it is
    the only track one of them must have tasks there (else its table would be empty)."""
    sets = layout_sets(cfg)
    layouts = {"unseen-layouts": [("test", "spanning", sets["test"][:10]), ("tuning", "spanning", sets["tuning"][:10])],
               "limited-data": [("fixed", "spanning", [FIXED_LAYOUT])],
               "fourrooms": [("FourRooms", "fourrooms", sets["fourrooms"][:10])]}
    every = [t for t in cfg.tracks if t != "fourrooms"]
    for name, kind, seeds in (group for track in every or ["fourrooms"] for group in layouts[track]):
        dists = mazes_of(kind, seeds)[1]
        usable = usable_horizons(cfg, dists)
        missing = [T for T in cfg.planning_horizons if T not in usable] if every \
            else ([] if usable else cfg.planning_horizons)
        if missing:
            longest = max(d.max() for d in dists)
            return (f"T={', '.join(map(str, missing))}: no task on the {name} layouts (their longest shortest path is "
                    f"{longest:.0f}, so T must be < {2 * longest:.0f})")
    return None


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    cfg = parse(Exp3Config, argv, prog=PROG)
    timer, out = Timer(), cfg.output_dir()
    device = setup_torch(cfg)
    staged = StagedOutputs(out)
    if cfg.plots_only:
        analyze_planning.plot_all(out / "results" / "metrics.json", read_npz(out / "results" / "exp3_arrays.npz"),
                                  staged.plots)
        if (out / "results" / "layout_sweep.json").exists():
            analyze_planning.plot_layout_sweep(read_json(out / "results" / "layout_sweep.json"),
                                               staged.plots / "exp3_layout_sweep.png")
        if (out / "results" / "reach_map.json").exists():
            analyze_planning.plot_reach_map(read_json(out / "results" / "reach_map.json"), staged.plots)
        print("\n".join(f"wrote {p}" for p in staged.publish()))
        return 0
    units = run_all_units(cfg, device)
    metrics = analyze_planning.summarize(units, cfg)
    criteria = analyze_planning.criteria(metrics, cfg)
    metrics_path = write_results(cfg, staged.results, "exp3_planning_efficiency", metrics, criteria, timer.seconds(),
                                 device)
    arrays = {f"{name}_loss_{source}_seed{seed}": np.asarray(curve, dtype=np.float32)
              for (seed, source), r in units.items() for name, curve in r["loss_curves"].items()}
    arrays |= analyze_planning.outcome_arrays(units)
    write_npz(staged.results / "exp3_arrays.npz", arrays)
    analyze_planning.plot_all(metrics_path, arrays, staged.plots)
    print(analyze_planning.format_tables(metrics))
    return finish(cfg, criteria, staged.publish(), timer.seconds())


if __name__ == "__main__":
    sys.exit(main())
