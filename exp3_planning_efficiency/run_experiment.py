"""Experiment 3: collect random walks -> train world model + goal energy -> evaluate planners -> plot.

    python run_experiment.py [--quick] [--seeds 0 1 2] [--planners helm cem] ...   (see --help)
    python run_experiment.py --plots-only    # redraw every plot from the saved results, no training

Resumable: per seed, the trained models and the evaluation results are checkpointed with the config
fields they depend on (roles "model", and "model" + "eval"), and skipped when a rerun would redo them
identically.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from common.config import Exp3Config, identity, parse
from common.runs import (StagedOutputs, Timer, finish, load_checkpoint_if_matches, numpy_rng,
                         progress, save_checkpoint, seed_everything, setup_torch, torch_generator, write_npz,
                         write_results)
from exp3_planning_efficiency import analyze_planning
from exp3_planning_efficiency.env_minigrid import FastMaze, collect_random_walks, sample_tasks
from exp3_planning_efficiency.run_planning import run_episodes
from exp3_planning_efficiency.world_models import (GoalEnergy, SnappedEnergy, SnappedModel, WorldModel,
                                                   energy_vs_bfs, k_step_accuracy, train_energy, train_world_model)

DISCRETE_PLANNERS = ("helm", "cem")  # plan with one-hot actions, so they can use the snapped model


def unit_config(cfg, seed: int, *roles: str) -> dict:
    """A unit's identity: its seed and every config field declared with one of `roles`."""
    return {"seed": seed, **identity(cfg, *roles)}


def build_models(cfg, maze: FastMaze, device):
    model = WorldModel(maze.width, maze.height, cfg.latent_dim, cfg.hidden_dim, cfg.coarse_stride).to(device)
    return model, GoalEnergy(cfg.latent_dim, cfg.hidden_dim).to(device)


def train_seed(cfg, seed: int, maze: FastMaze, cell_dist, device) -> dict:
    """Collect data, train both models, measure their quality. Returns the checkpoint payload."""
    seed_everything(seed)  # the module inits below draw from torch's global generator
    walk_poses, walk_actions = collect_random_walks(maze, cfg.num_walks, cfg.walk_length,
                                                    numpy_rng(seed, "exp3-walks"))
    model, energy = build_models(cfg, maze, device)
    model_losses = train_world_model(model, maze, walk_poses, walk_actions, cfg, numpy_rng(seed, "exp3-model-batches"),
                                     cfg.quiet)
    energy_losses = train_energy(energy, model, maze, walk_poses, cfg, numpy_rng(seed, "exp3-energy-batches"),
                                 torch_generator(seed, "exp3-energy-noise", device=device), cfg.quiet)
    rng = numpy_rng(seed, "exp3-model-quality")
    diverged = not (np.isfinite(model_losses).all() and np.isfinite(energy_losses).all())
    quality = {"diverged": diverged, "final_model_loss": float(model_losses[-1]),
               "final_energy_loss": float(energy_losses[-1])}
    if not diverged:
        quality["k_step_accuracy"] = {str(k): v for k, v in
                                      k_step_accuracy(model, maze, walk_poses, walk_actions, [1, 2, 4, 8, 16, 32], rng).items()}
        quality["energy"] = energy_vs_bfs(energy, model, maze, cell_dist, rng)
    return {"model": model.state_dict(), "energy": energy.state_dict(), "quality": quality,
            "loss_curves": {"model_loss": model_losses, "energy_loss": energy_losses}}


def evaluate_planner(cfg, seed: int, planner: str, model, energy, maze: FastMaze, cell_dist, device) -> dict:
    """One planner on the seed's tasks of every horizon (the same tasks for every planner)."""
    if planner in DISCRETE_PLANNERS and cfg.snap_latents:
        model = SnappedModel(model)
        energy = SnappedEnergy(energy, model)
    results = {}
    for T in cfg.planning_horizons:
        starts, goals, _ = sample_tasks(maze, cell_dist, T, cfg.num_eval_episodes, numpy_rng(seed, "exp3-tasks", T))
        generator = torch_generator(seed, "exp3-planner", T, device=device)
        out = run_episodes(planner, model, energy, maze, cell_dist, starts, goals, T, cfg, generator)
        results[str(T)] = {k: np.asarray(v).tolist() for k, v in out.items()}
    return results


def run_seed(cfg, seed: int, maze: FastMaze, cell_dist, device, model_dir: Path | None = None,
             eval_dir: Path | None = None) -> dict:
    """Train (or load) one seed's models and evaluate every planner; checkpoints default to checkpoints/."""
    model_dir = model_dir or cfg.output_dir() / "checkpoints"
    eval_dir = eval_dir or model_dir
    model_unit = unit_config(cfg, seed, "model")
    trained = load_checkpoint_if_matches(model_dir / f"models_seed{seed}.pt", model_unit)
    if trained is None:
        trained = {"unit_config": model_unit, **train_seed(cfg, seed, maze, cell_dist, device)}
        save_checkpoint(model_dir / f"models_seed{seed}.pt", trained)
    curves = trained["loss_curves"]
    if trained["quality"]["diverged"]:
        return {"diverged": True, "quality": trained["quality"], "loss_curves": curves}
    model, energy = build_models(cfg, maze, device)
    model.load_state_dict(trained["model"])
    energy.load_state_dict(trained["energy"])
    model.requires_grad_(False)  # planners differentiate w.r.t. actions only
    energy.requires_grad_(False)
    evaluation = {}
    for planner in progress(cfg.planners, cfg.quiet, desc=f"seed {seed} planners", leave=False):
        eval_unit = {**unit_config(cfg, seed, "model", "eval"), "planner": planner}
        path = eval_dir / f"evaluation_seed{seed}_{planner}.pt"
        evaluated = load_checkpoint_if_matches(path, eval_unit)
        if evaluated is None:
            evaluated = {"unit_config": eval_unit,
                         "results": evaluate_planner(cfg, seed, planner, model, energy, maze, cell_dist, device)}
            save_checkpoint(path, evaluated)
        evaluation[planner] = evaluated["results"]
    return {"diverged": False, "quality": trained["quality"], "evaluation": evaluation, "loss_curves": curves}


def _init_worker(num_threads: int) -> None:
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def run_all_seeds(cfg, maze: FastMaze, cell_dist, device) -> dict:
    """Every seed; in `cfg.jobs` worker processes when jobs > 1 (seeds are independent units, so the
    results are identical, only the wall time changes)."""
    if cfg.jobs == 1:
        return {seed: run_seed(cfg, seed, maze, cell_dist, device) for seed in progress(cfg.seeds, cfg.quiet, desc="seeds")}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.jobs, mp_context=context, initializer=_init_worker, initargs=(cfg.num_threads,)) as pool:
        futures = {seed: pool.submit(run_seed, cfg, seed, maze, cell_dist, device) for seed in cfg.seeds}
        return {seed: future.result() for seed, future in futures.items()}


def require_tasks_exist(cell_dist: np.ndarray, horizons: list[int], prog: str) -> None:
    """Exit 2 (before any work) when a horizon has no start/goal pair with BFS distance in (T/2, T]."""
    for T in horizons:
        if not ((cell_dist > T / 2) & (cell_dist <= T)).any():
            print(f"{prog}: error: planning_horizons: T={T} has no task (the maze's longest shortest path is "
                  f"{cell_dist.max():.0f}, so T must be < {2 * cell_dist.max():.0f})", file=sys.stderr)
            sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    prog = "exp3_planning_efficiency/run_experiment.py"
    cfg = parse(Exp3Config, argv, prog=prog)
    timer, out = Timer(), cfg.output_dir()
    maze = FastMaze(cfg.env_id)
    cell_dist = maze.cell_distances()
    require_tasks_exist(cell_dist, cfg.planning_horizons, prog)
    device = setup_torch(cfg)
    staged = StagedOutputs(out)
    if cfg.plots_only:
        analyze_planning.plot_all(out / "results" / "metrics.json",
                                          dict(np.load(out / "results" / "exp3_arrays.npz")), staged.plots)
        print("\n".join(f"wrote {p}" for p in staged.publish()))
        return 0
    per_seed = run_all_seeds(cfg, maze, cell_dist, device)
    table = analyze_planning.aggregate(per_seed, cfg)
    criteria = analyze_planning.criteria(table, cfg)
    metrics = {"success": table, "world_model": {str(s): r["quality"] for s, r in per_seed.items()},
               "diverged_seeds": [s for s, r in per_seed.items() if r["diverged"]],
               "num_poses": maze.num_poses, "max_bfs_distance": float(cell_dist.max())}
    metrics_path = write_results(cfg, staged.results, "exp3_planning_efficiency", metrics, criteria,
                                 timer.seconds(), device)
    arrays = {f"{kind}_seed{s}": np.asarray(curve, dtype=np.float32)
              for s, r in per_seed.items() for kind, curve in r["loss_curves"].items()}
    write_npz(staged.results / "exp3_arrays.npz", arrays)
    analyze_planning.plot_all(metrics_path, arrays, staged.plots)
    print_success_table(table, cfg)
    return finish(cfg, criteria, staged.publish(), timer.seconds())


def print_success_table(table: dict, cfg) -> None:
    print("\nsuccess rate (pooled over seeds) | model evaluations per episode")
    print("planner  " + "".join(f"T={T:<12}" for T in cfg.planning_horizons))
    for planner, rows in table.items():
        cells = [f"{rows[str(T)]['success']:.2f}|{rows[str(T)]['model_evals_per_episode']:<7.0f}"
                 if rows[str(T)]["success"] is not None else "n/a".ljust(12) for T in cfg.planning_horizons]
        print(f"{planner:<9}" + "".join(c.ljust(14) for c in cells))


if __name__ == "__main__":
    sys.exit(main())
