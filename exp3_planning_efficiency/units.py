"""The units of Experiment 3 and the layouts they use: a unit (seed x data source) trains (or loads)
one seed's networks on one data source and evaluates every track that uses them.

Data sources: `layouts` (random walks on the training layouts; evaluated on the unseen-layouts and
FourRooms tracks) and `fixed-<n>` (n random walks on the one maze FIXED_LAYOUT; the limited-data track).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.launch import Unit, launch
from common.runs import numpy_rng
from exp3_planning_efficiency.env_minigrid import ENV_ID, FOURROOMS_ID, FastMaze, Replay, layout_split
from exp3_planning_efficiency.evaluation import evaluate_track, usable_horizons
from exp3_planning_efficiency.planners import PLANNERS
from exp3_planning_efficiency.training import load_networks, load_or_train_unit

FIXED_LAYOUT = 0  # the limited-data track's maze (stage one's fixed layout)
UNSEEN_ONLY = ("helm_no_spectral", "helm_no_hf", "flat")  # evaluated on the unseen-layouts track only (compute)
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
    """The run's data sources: "layouts" if a track uses the training layouts, "fixed-<n>" per limited-data n."""
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
                           if not set(PLANNERS[p].networks) & set(result["diverged"])]
    for track, (mazes, dists) in evals.items():
        family = track.rsplit("-", 1)[0] if track.startswith("limited") else track
        key = TRACK_KEYS["tuning"] if eval_layouts == "tuning" else TRACK_KEYS[family]
        layouts = f"{eval_layouts if track == 'unseen-layouts' else track}/{len(mazes)}"
        result["tracks"][track] = evaluate_track(cfg, seed, track, key, nets, payload["unit_config"], layouts, mazes,
                                                 dists, planners[track], checkpoints, device)
    return result



def run_units(cfg, units: list[tuple], device) -> list[dict]:
    """`run_unit(unit_cfg, seed, source, device)` for every (unit_cfg, seed, source) in `units`, by
    `cfg.launcher` (inline: in this process, or in `cfg.jobs` worker processes when jobs > 1). Units
    are independent, so the results are identical whichever ran them; only the wall time changes."""
    def name(unit_cfg, seed, source):
        return f"{source}{unit_cfg.num_train_layouts if source == 'layouts' else ''}/seed{seed}"
    named = [Unit(name(*unit), run_unit, (*unit, device)) for unit in units]
    return launch(cfg, named, cfg.output_dir() / "checkpoints" / "launcher", worker_processes=True)


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
