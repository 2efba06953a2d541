"""Experiment configs: `RunConfig` (the fields every experiment shares) and one dataclass per experiment.

Every field is declared with `common.fields.param(default, help, role, ...)`; `validate()` checks
the declared bounds, then the experiment's cross-field and memory checks, then the output folder
(`common.output_folder`). `quick_overrides()` is the `--quick` preset; `common.cli_parse.parse`
turns a config class into a command line.
`python -m common.config exp1 [flags]` prints the resolved config as JSON.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from common import output_folder
from common.cli_parse import parse
from common.fields import check_bounds, identity, param, require, short
from common.output_folder import TAG

SEED_MAX = 2**32 - 1  # numpy's SeedSequence/legacy seeding range
MEMORY_LIMIT_GIB = 8.0  # a third of this machine's memory: beyond it, a config is refused up front
FLOAT32_TINY = 2.0 ** -126  # float32's smallest normal number: below it, values lose their precision
FLOAT32_EPS = 2.0 ** -23  # float32's relative resolution


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class RunConfig:
    """Fields every experiment shares."""

    seeds: list[int] = param([0, 1, 2], "seeds of the reported runs (the tuning seed is separate)", "eval",
                             ge=0, le=SEED_MAX, le_why="numpy's seed range")
    tuning_seed: int = param(100, "seed used only for hyper-parameter sweeps, never reported", "eval",
                             ge=0, le=SEED_MAX, le_why="numpy's seed range")
    device: str = param("cpu", "cpu | cuda | auto (auto = cuda when available)", "model",
                        choices=("cpu", "cuda", "auto"))
    num_threads: int = param(1, "torch CPU threads per process (they change float rounding, so they are "
                             "part of a checkpoint's identity)", "model", ge=1)
    quick: bool = param(False, "tiny preset for smoke runs (seconds, numbers not meaningful)", "eval")
    out_dir: str = param("", "output folder ('' = the experiment folder for the full default run, "
                         "else runs/<experiment>/<UTC time>-<config hash>/)", "run")
    config: str = param("", "rerun a saved run: take every model and eval field from this results/config.json, "
                        "then the flags given explicitly; its run fields (out_dir, tag, quiet, launcher, jobs, ...) "
                        "are not read, and the run never writes into the folder the file comes from nor into "
                        "the committed findings ('' = none; not with --quick)", "run")
    tag: str = param("", "name appended to the run folder: runs/<experiment>/<UTC time>-<config hash>-<tag>/ "
                     "(1-40 letters, digits, '.', '_', '-'; changes no hash; a tagged full default run goes to "
                     "runs/ too; not with --out-dir)", "run")
    quiet: bool = param(False, "no progress bars", "run")
    strict: bool = param(False, "exit 1 when a success criterion FAILs (default: exit 0)", "run")
    plots_only: bool = param(False, "redraw every plot from the saved results of this config (no training)",
                             "run")
    dry_run: bool = param(False, "validate, print the output folder and exit (no work, nothing written)", "run")
    launcher: str = param("inline", "where the independent units (seeds, sweep points, tracks) run: inline (this "
                          "process), local (submitit subprocesses, --jobs at a time) or slurm (submitit job array)",
                          "run", choices=("inline", "local", "slurm"))
    jobs: int = param(1, "units run at once (local: subprocesses; inline: worker processes where the experiment has "
                      "them; slurm: the array's parallelism), num_threads torch threads each", "run", ge=1)
    slurm_partition: str = param("", "slurm: partition ('' = the cluster's default)", "run")
    slurm_time_min: int = param(120, "slurm (and local): time limit per unit in minutes", "run", ge=1, le=100_000)
    slurm_gpus_per_task: int = param(0, "slurm: GPUs per unit (use with --device cuda)", "run", ge=0, le=64)

    experiment_folder = ""  # class attribute, set by subclasses
    saved_for_plots = ()  # tuple of files under the output folder that --plots-only reads

    def quick_overrides(self) -> dict:
        """Field values of the `--quick` preset."""
        return {"seeds": self.seeds[:1]}

    def is_full_default(self) -> bool:
        """Every field that changes a number has its default value."""
        return identity(self, "model", "eval") == identity(type(self)(), "model", "eval")

    def output_dir(self) -> Path:
        """This run's output folder (`common.output_folder.output_dir`)."""
        return output_folder.output_dir(self)

    def validate(self) -> None:
        """Raise ConfigError (one line) on the first bad value; reads the disk, writes nothing."""
        for f in dataclasses.fields(self):
            check_bounds(f, getattr(self, f.name))
        require(not self.tag or TAG.fullmatch(self.tag) is not None, f"--tag {short(repr(self.tag))}: use 1 to 40 "
                "letters, digits, '.', '_' or '-', starting with a letter or digit")
        require(self.tuning_seed not in self.seeds,
                f"tuning_seed {self.tuning_seed} must differ from the reported seeds {self.seeds}")
        cpus = available_cpus()
        require(self.num_threads <= cpus, f"num_threads {self.num_threads} is more than this machine's {cpus} CPUs")
        require(self.launcher == "slurm" or self.jobs * self.num_threads <= cpus,
                f"jobs x num_threads = {self.jobs * self.num_threads} is more than this machine's {cpus} CPUs")
        if self.launcher != "inline":
            require(importlib.util.find_spec("submitit") is not None,
                    f"--launcher {self.launcher} needs submitit (pip install -r requirements.txt)")
        require(self.launcher != "slurm" or shutil.which("sbatch") is not None,
                "--launcher slurm: no SLURM on this machine (sbatch not found); use inline or local here")
        if self.device == "cuda":
            import torch
            require(torch.cuda.is_available(), "device cuda requested but torch sees no CUDA GPU (use --device cpu)")
        output_folder.check_output_dir(self)


def _require_memory(what: str, num_bytes: float) -> None:
    gib = num_bytes / 2**30
    require(gib <= MEMORY_LIMIT_GIB, f"{what} would need {gib:.1f} GiB of memory (limit {MEMORY_LIMIT_GIB:g} GiB)")


MAX_RK4_STEPS = 1e6  # RK4 steps of one trajectory in sequence (the default config needs 3,500)


@dataclass
class Exp1Config(RunConfig):
    """Experiment 1, spectral cliff: Jacobian growth of learned controlled-Lorenz world models."""

    experiment_folder = "exp1_spectral_cliff"
    saved_for_plots = ("results/config.json", "results/metrics.json", "results/exp1_arrays.npz")

    # system and data
    dt: float = param(0.01, "RK4 integration step of the true Lorenz system", "model", gt=0, le=0.1)
    dt_model: float = param(0.05, "time covered by one world-model step (a multiple of dt)", "model", gt=0)
    control_scale: float = param(0.5, "forcing c: s_dot += c * std_i * u_i, u in [-1, 1]^3", "model", ge=0, le=10)
    burn_in_time: float = param(20.0, "time units integrated before recording (reach the attractor)", "model",
                                gt=0, le=1000)
    num_train_trajectories: int = param(2000, "training trajectories", "model", ge=1, le=100_000)
    num_test_trajectories: int = param(200, "test trajectories", "model", ge=1, le=100_000)
    trajectory_steps: int = param(300, "model steps per trajectory", "model", ge=10, le=10_000)
    # model
    hidden_dim: int = param(128, "width of the residual MLP step model", "model", ge=1, le=4096)
    num_layers: int = param(2, "hidden layers of the residual MLP step model", "model", ge=1, le=16)
    # training
    variants: list[str] = param(["flat", "flat_multistep", "spectral", "hf", "helm"], "ablation variants to train "
                                "(flat_multistep: flat on multistep_rollout_steps-step rollouts, the compounding-error "
                                "baseline)",
                                "eval", choices=("flat", "flat_multistep", "spectral", "hf", "helm"))
    train_protocol: str = param("short", "short: one model per variant trained on short rollouts; per_horizon: "
                                "the specification's one model per T trained on T-step rollouts", "model",
                                choices=("short", "per_horizon"))
    train_rollout_steps: int = param(1, "rollout length of the short protocol's loss (1 = teacher forcing)",
                                     "model", ge=1, le=1000)
    multistep_rollout_steps: int = param(10, "rollout length of flat_multistep's loss in the short protocol (the "
                                         "per_horizon protocol trains every variant on T-step rollouts)", "model",
                                         ge=1, le=1000)
    train_steps: int = param(3000, "optimizer steps per model", "model", ge=1, le=100_000)
    batch_size: int = param(256, "training batch size (windows)", "model", ge=1, le=65_536)
    lr: float = param(1e-3, "Adam learning rate (cosine-decayed to 0 over train_steps)", "model", gt=0)
    lambda_spectral: float = param(0.0, "weight of the hinge on the per-step spectral norm", "model", ge=0)
    lambda_ftle: float = param(1e-3, "weight of the penalty on the model's finite-time largest Lyapunov exponent "
                               "above ftle_margin (gradient-flossing style)", "model", ge=0)
    lambda_kstep: float = param(0.0, "weight of the hinge on the spectral norm of the penalty_steps-step state "
                                "Jacobian", "model", ge=0)
    penalty_steps: int = param(10, "steps of the model trajectories the FTLE and k-step penalties run", "model",
                               ge=1, le=200)
    ftle_margin: float = param(0.0, "the FTLE penalty acts above this exponent (1 / time unit)", "model")
    penalty_states: int = param(32, "visited states of each batch the FTLE and k-step trajectories start from",
                                "model", ge=1, le=65_536)
    lambda_hf: float = param(1.0, "weight of the HF-invariance loss of the transition", "model", ge=0)
    hf_noise_sigma: float = param(0.05, "std of the input noise of the HF-invariance loss (normalized units)",
                                  "model", gt=0, le=10)
    divergence_threshold: float = param(1e3, "final training loss above this (or NaN/Inf) marks a model diverged",
                                        "model", gt=0)
    # analysis
    horizons: list[int] = param([5, 10, 20, 50, 100, 200], "rollout horizons T of the Jacobian analysis", "eval",
                                ge=1, le=1000)
    num_eval_states: int = param(64, "test initial states per horizon", "eval", ge=1, le=10_000)
    planning_horizons: list[int] = param([10, 20, 50, 100], "horizons of the planning-convergence test", "eval",
                                         ge=1, le=1000)
    planning_max_iters: int = param(200, "Adam iteration budget of the planning test", "eval", ge=1, le=100_000)
    planning_lr: float = param(0.05, "Adam learning rate on the action sequence", "eval", gt=0, le=10)
    planning_tolerance: float = param(0.1, "success: ||s_T - target|| below this (normalized units; the diagnostic "
                                      "on the model, and the true-system test under success_rule absolute)", "eval",
                                      gt=0)
    task_kind: str = param("far", "true-system tasks (exp1_spectral_cliff/tasks.py): random (target = the true "
                           "state after i.i.d. random actions) or far (after persistent random actions, at least "
                           "task_min_distance and at most task_max_distance from the zero-action endpoint)", "eval",
                           choices=("random", "far"))
    task_hold_steps: int = param(5, "far tasks: steps each random action is held", "eval", ge=1, le=1000)
    task_draws: int = param(64, "far tasks: action sequences drawn per start state (the first whose d0 is in "
                            "[task_min_distance, task_max_distance] is kept, else the one nearest that band)", "eval",
                            ge=1, le=10_000)
    task_min_distance: float = param(0.4, "far tasks: least distance d0 from the zero-action endpoint to the target "
                                     "(normalized units)", "eval", ge=0)
    task_max_distance: float = param(1.0, "far tasks: largest distance d0 from the zero-action endpoint to the "
                                     "target (normalized units)", "eval", gt=0)
    success_rule: str = param("relative", "true-system success: absolute (error < planning_tolerance) or relative "
                              "(error < success_ratio x d0, d0 = the zero-action endpoint's distance to the target)",
                              "eval", choices=("absolute", "relative"))
    success_ratio: float = param(0.25, "relative success: the largest error, as a fraction of d0", "eval", gt=0,
                                 le=1)
    control_tolerance: float = param(0.05, "true-system planning: the planner stops once its own model's error is "
                                     "below this (success is still judged in the true system, by success_rule)", "eval",
                                     gt=0)
    mpc_interval: int = param(10, "closed-loop planning in the true system: re-plan from the true state every this "
                              "many steps", "eval", ge=1, le=1000)
    mpc_iters: int = param(20, "closed loop: Adam iterations of each re-plan (warm-started from the previous plan)",
                           "eval", ge=1, le=100_000)
    planning_grad_clip: float = param(0.1, "the true_clipped row: the planner on the true system, open loop, with "
                                      "each example's action gradient clipped to this norm (0 = off)", "eval", ge=0)
    planning_grad_window: int = param(0, "the true_clipped row: gradients through at most this many steps (the "
                                      "state detached every k steps, planner.py; 0 = off)", "eval", ge=0, le=1000)
    diagnose: bool = param(False, "also measure why plans fail (diagnosis.py): each planner's prediction error along "
                           "its plan vs random actions, planning to the model's optimum, an MPC interval sweep",
                           "eval")
    diagnose_mpc_intervals: list[int] = param([1, 5, 10], "--diagnose: the closed loop's re-planning intervals",
                                              "eval", ge=1, le=1000)
    lambda_sweep: list[float] = param([3e-2, 1e-1, 1.5e-1, 2e-1, 5e-1], "lambda_spectral values (per-step hinge "
                                      "family, with HF) of the tuning-seed frontier sweep", "eval", ge=0)
    ftle_sweep: list[float] = param([1e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2], "lambda_ftle values of the tuning-seed "
                                    "frontier sweep", "eval", ge=0)
    kstep_sweep: list[float] = param([1e-5, 3e-5, 1e-4, 1e-3], "lambda_kstep values of the tuning-seed frontier "
                                     "sweep", "eval", ge=0)
    growth_fit_min_horizon: int = param(20, "growth rate = slope of log-norm vs time over horizons >= this",
                                        "eval", ge=1)

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "num_train_trajectories": 64, "num_test_trajectories": 16,
                "trajectory_steps": 60, "burn_in_time": 5.0, "train_steps": 40, "batch_size": 64,
                "horizons": [5, 20, 50, 100, 200], "num_eval_states": 8, "planning_horizons": [10],
                "planning_max_iters": 20, "mpc_interval": 5, "mpc_iters": 5, "lambda_sweep": [0.0, 0.1],
                "ftle_sweep": [0.1], "kstep_sweep": [0.1]}

    def validate(self) -> None:
        super().validate()
        # a trajectory is integrated step after step: burn-in, then dt_model / dt RK4 substeps per model step
        rk4_steps = (self.burn_in_time + self.trajectory_steps * self.dt_model) / self.dt
        require(rk4_steps <= MAX_RK4_STEPS, f"dt {self.dt}: a trajectory would need {rk4_steps:.3g} RK4 steps in "
                f"sequence ((burn_in_time + trajectory_steps x dt_model) / dt; limit {MAX_RK4_STEPS:.0e}, hours of "
                "integration)")
        ratio = self.dt_model / self.dt
        require(round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-6,
                f"dt_model {self.dt_model} must be a multiple of dt {self.dt} (at least one RK4 step per model step)")
        fitted = [T for T in self.horizons if T >= self.growth_fit_min_horizon]
        require(len(fitted) >= 2, f"growth_fit_min_horizon {self.growth_fit_min_horizon} leaves {len(fitted)} of the "
                f"horizons {self.horizons} to fit a growth rate to (it needs 2)")
        require(max(self.horizons) <= self.trajectory_steps or self.train_protocol == "short",
                "per_horizon training needs trajectory_steps >= max(horizons)")
        require(self.train_rollout_steps < self.trajectory_steps,
                f"train_rollout_steps must be < trajectory_steps ({self.trajectory_steps})")
        require("flat_multistep" not in self.variants or self.multistep_rollout_steps < self.trajectory_steps,
                f"multistep_rollout_steps must be < trajectory_steps ({self.trajectory_steps})")
        require(self.task_min_distance <= self.task_max_distance, f"task_min_distance {self.task_min_distance} "
                f"must be <= task_max_distance {self.task_max_distance}")
        require(self.num_eval_states <= self.num_test_trajectories,
                f"num_eval_states {self.num_eval_states} must be <= num_test_trajectories {self.num_test_trajectories}")
        S, T = len(self.seeds), max(self.horizons + self.planning_horizons)
        # float64 states and actions while simulating, float32 copies for training
        _require_memory("the trajectories (seeds x trajectories x steps)",
                        S * (self.num_train_trajectories + self.num_test_trajectories) * (self.trajectory_steps + 1)
                        * 3 * 24)
        # step Jacobians (float32 and float64 copies) at every visited (state, step) of the analysis
        _require_memory("the rollout Jacobians (seeds x eval states x max horizon)",
                        S * self.num_eval_states * T * 9 * 2 * 24)
        if self.task_kind == "far":  # every draw's actions (float64) and its copy when held
            _require_memory("the far tasks' draws (seeds x eval states x task_draws x max planning horizon)",
                            S * self.num_eval_states * self.task_draws * max(self.planning_horizons) * 3 * 16)
        multistep = self.multistep_rollout_steps if "flat_multistep" in self.variants else 1
        _require_memory("a training step (seeds x batch x rollout x width)",
                        S * self.batch_size * max(self.train_rollout_steps, multistep) * self.hidden_dim
                        * self.num_layers * 4 * 16)


@dataclass
class Exp2Config(RunConfig):
    """Experiment 2, funnel heatmap: mollification of a rugged 2-D energy."""

    experiment_folder = "exp2_funnel_heatmap"
    saved_for_plots = ("results/metrics.json", "results/exp2_arrays.npz")

    # true energy E*(x) = 0.5 k ||x||^2 + A sum_i (1 - cos(w x_i)) on [-L, L]^2
    domain_half_width: float = param(0.3, "L: the domain is [-L, L]^2", "model", gt=0, le=1000)
    quadratic_k: float = param(1.0, "k: curvature of the funnel", "model", gt=0)
    ripple_amplitude: float = param(0.012, "A: amplitude of the cosine ripples", "model", ge=0)
    ripple_frequency: float = param(45.0, "w: angular frequency of the ripples", "model", gt=0, le=10_000)
    # model
    num_fourier_features: int = param(64, "random Fourier features of the input encoding", "model", ge=1, le=4096)
    fourier_scale: float = param(30.0, "std of the random Fourier frequencies", "model", gt=0)
    hidden_dim: int = param(128, "width of the energy MLP", "model", ge=1, le=4096)
    num_layers: int = param(2, "hidden layers of the energy MLP", "model", ge=1, le=16)
    # training
    train_steps: int = param(2000, "Adam steps per model", "model", ge=1, le=100_000)
    batch_size: int = param(512, "training batch size (points sampled uniformly from the domain)", "model",
                            ge=1, le=65_536)
    lr: float = param(1e-3, "Adam learning rate (cosine decay to 0)", "model", gt=0)
    train_margin: float = param(0.1, "training points come from [-(1+m)L, (1+m)L]^2, so the fit holds up to the edge",
                                "model", ge=0, le=10)
    hf_form: str = param("mollified_target", "HELM loss: mollified_target (fit E* at x+delta) | "
                         "consistency (the specification's lambda_hf * (E(x+delta) - E(x))^2)", "model",
                         choices=("mollified_target", "consistency"))
    lambda_hf: float = param(10.0, "weight of the consistency loss (hf_form=consistency)", "model", ge=0)
    models_per_unit: int = param(0, "models trained together as one batched unit (0: all of a run or sweep in one; "
                                 "3: one seed of the run per unit, e.g. to spread seeds over --launcher local or "
                                 "slurm); batching changes float rounding, so it is part of a model's identity",
                                 "model", ge=0, le=100_000)
    hf_noise_sigma: float = param(0.05, "std of delta ~ N(0, sigma^2 I)", "model", gt=0, le=1000)
    hf_target_draws: int = param(8, "noise draws averaged into each mollified target (hf_form=mollified_target)",
                                 "model", ge=1, le=1024)
    # analysis
    grid_resolution: int = param(200, "grid for energy plots and spurious-minima counts", "eval", ge=3, le=2000)
    basin_grid_resolution: int = param(50, "start grid (per side) of the basin-coverage test", "eval", ge=1, le=400)
    gd_steps_basin: int = param(300, "gradient-descent steps on the landscape", "eval", ge=1, le=20_000)
    gd_lr_basin: float = param(0.02, "gradient-descent step size (E* has curvature <= k + A w^2 = 25)", "eval",
                               gt=0, le=10)
    polish_steps: int = param(300, "descent steps on the TRUE energy after the landscape's", "eval", ge=0, le=20_000)
    sweep_sigmas: list[float] = param([0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2],
                                      "hf_noise_sigma values of the tuning-seed sweep", "eval", gt=0, le=1000)
    sweep_lambdas: list[float] = param([0.1, 1.0, 10.0], "lambda_hf values of the tuning-seed sweep (consistency)",
                                       "eval", ge=0)

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "train_steps": 100, "grid_resolution": 40,
                "basin_grid_resolution": 10, "gd_steps_basin": 50, "polish_steps": 50,
                "sweep_sigmas": [0.05], "sweep_lambdas": [1.0], "hidden_dim": 32, "batch_size": 128}

    def validate(self) -> None:
        super().validate()
        # the loss squares energy errors in float32 (then divides by E*'s variance on the domain): an error at
        # float32's resolution of the energy, eps x its std, squared, must stay a normal number. The quadratic
        # part alone, k/2 ||x||^2 with x uniform on [-L, L]^2, has variance k^2 L^4 2/45 (on a narrow domain
        # float32 rounds cos(w x) to 1, so the ripples add nothing there)
        variance = self.quadratic_k ** 2 * self.domain_half_width ** 4 * 2 / 45
        require(FLOAT32_EPS ** 2 * variance >= FLOAT32_TINY,
                f"domain_half_width {self.domain_half_width} is too narrow for float32: the energy's variance on it, "
                f"{variance:.3g}, times float32's eps^2 is below its smallest normal {FLOAT32_TINY:.3g}")
        models = 3 * len(self.seeds)  # Flat, HELM and the other HF form per seed, trained as one batch
        width = 2 * self.num_fourier_features + self.hidden_dim * self.num_layers
        _require_memory("a training step (models x batch x width)", models * self.batch_size * width * 4 * 12)
        # the grid's activations of every layer are alive at once under no_grad, plus a margin
        _require_memory("the energy grid (models x grid^2 x width)",
                        models * self.grid_resolution ** 2 * (width + self.hidden_dim) * 4 * 1.5)


EXP3_TRACKS = ("unseen-layouts", "limited-data", "fourrooms")
EXP3_PLANNERS = ("helm", "helm_no_coarse", "helm_no_spectral", "helm_no_hf", "cem", "flat", "random", "bfs")
EXP3_DIAGNOSTIC_PLANNERS = ("helm_exact_coarse",)  # references that read the layout; never run by default


@dataclass
class Exp3Config(RunConfig):
    """Experiment 3, planning efficiency: coarse-to-fine planning through a learned MiniGrid model,
    on layouts the model never saw (`unseen-layouts`), on one layout with little data
    (`limited-data`) and zero-shot on MiniGrid-FourRooms-v0 (`fourrooms`)."""

    experiment_folder = "exp3_planning_efficiency"
    saved_for_plots = ("results/metrics.json", "results/exp3_arrays.npz")

    tracks: list[str] = param(list(EXP3_TRACKS), "tracks to run", "eval", choices=EXP3_TRACKS)
    # layouts and data
    layout_split_seed: int = param(1, "seed of the train / tuning / test layout split", "model", ge=0, le=2**32 - 1)
    num_train_layouts: int = param(100, "spanning-tree layouts the models train on", "model", ge=1, le=10_000)
    num_tuning_layouts: int = param(20, "layouts tune.py evaluates on (disjoint from train and test)", "eval",
                                    ge=1, le=10_000)
    num_test_layouts: int = param(50, "unseen layouts the unseen-layouts track evaluates on", "eval", ge=1, le=10_000)
    num_fourrooms_layouts: int = param(50, "FourRooms resets (gap positions) the fourrooms track evaluates on",
                                       "eval", ge=1, le=10_000)
    walks_per_layout: int = param(40, "random walks collected per training layout", "model", ge=1, le=100_000)
    walk_length: int = param(48, "steps per random walk", "model", ge=1, le=10_000)
    limited_data_walks: list[int] = param([100, 300, 2000], "limited-data track: random walks on its one layout",
                                          "model", ge=1, le=100_000)
    # world model
    latent_channels: int = param(8, "channels of the spatial latent (channels x 19 x 19)", "model", ge=1, le=256)
    hidden_channels: int = param(16, "channels of the encoder and the fine transition", "model", ge=1, le=256)
    coarse_hidden_channels: int = param(16, "channels of the coarse transition", "model", ge=1, le=256)
    coarse_stride: int = param(4, "fine steps per coarse step (macro-actions: all 3^k action sequences)", "model",
                               ge=2, le=5)
    model_train_steps: int = param(1000, "world-model training steps", "model", ge=1, le=100_000)
    model_batch_size: int = param(32, "batch size (windows) of world-model training", "model", ge=1, le=4096)
    coarse_heads: int = param(2, "coarse transitions trained side by side (an ensemble); planners trust a coarse "
                              "prediction only where all agree", "model", ge=1, le=8)
    coarse_batch_size: int = param(64, "batch size (windows of coarse_stride actions) of the coarse transition's "
                                   "loss", "model", ge=1, le=4096)
    model_lr: float = param(1e-2, "Adam learning rate of the world model (cosine decay)", "model", gt=0)
    model_rollout_steps: int = param(4, "latent rollout length of the prediction loss", "model", ge=1, le=64)
    lambda_spectral: float = param(0.1, "HELM: weight of the spectral hinge on the fine transition", "model", ge=0)
    # goal energy
    energy_family: str = param("propagated", "goal energy: propagated (Bellman-Ford over the map the goal "
                               "observation shows: sees the whole maze) or local (a distance between node "
                               "embeddings that see 5 x 5 cells)", "model", choices=("propagated", "local"))
    energy_hidden: int = param(16, "channels of the goal energy's CNN (and the local energy's embedding size)",
                               "model", ge=1, le=1024)
    energy_iterations: int = param(64, "Bellman-Ford sweeps of the goal energy in training (planning and "
                                   "evaluation sweep until the values stop changing)", "model", ge=1, le=10_000)
    energy_reach: int = param(0, "Bellman-Ford sweeps of the goal energy when planning, i.e. how many steps from "
                              "the goal it sees (beyond: one flat value); 0 = until the values stop changing "
                              "(the whole maze)", "eval", ge=0, le=10_000)
    energy_train_steps: int = param(600, "goal-energy training steps", "model", ge=1, le=100_000)
    energy_batch_size: int = param(16, "goal observations per goal-energy training step", "model", ge=1, le=4096)
    energy_starts_per_goal: int = param(32, "start observations per goal in goal-energy training", "model",
                                        ge=1, le=4096)
    energy_lr: float = param(1e-2, "Adam learning rate of the goal energy (cosine decay)", "model", gt=0)
    energy_push_weight: float = param(10.0, "weight of the goal energy's bonus for distance between pairs "
                                      "(the quasimetric loss)", "model", ge=0)
    local_push_weight: float = param(300.0, "the same bonus for the local energy (chosen on the tuning seed: "
                                     "tune.py --tuning-sweep local_push)", "model", ge=0)
    hf_noise_sigma: float = param(0.3, "HELM: HF invariance, feature noise of the energy (x feature std)", "model",
                                  gt=0, le=100)
    # planning
    planning_horizons: list[int] = param([10, 20, 30, 50, 80], "task horizons T (BFS distance in (T/2, T])", "eval",
                                         ge=1, le=200)
    num_eval_episodes: int = param(10, "evaluation episodes per horizon per seed and track", "eval", ge=1, le=1000)
    planners: list[str] = param(list(EXP3_PLANNERS), "planners to evaluate", "eval",
                                choices=EXP3_PLANNERS + EXP3_DIAGNOSTIC_PLANNERS)
    replan_every: int = param(4, "every planner re-plans after this many real steps", "eval", ge=1, le=1000)
    coarse_horizon: int = param(5, "HELM: most macro-steps the coarse level plans ahead", "eval", ge=1, le=100)
    helm_num_samples: int = param(64, "HELM: CEM samples per iteration of the coarse level", "eval", ge=1, le=100_000)
    helm_num_iters: int = param(4, "HELM (both levels) and HELM-without-coarse: CEM iterations", "eval", ge=1, le=1000)
    helm_subgoal_macros: int = param(3, "HELM: the subgoal is at most this many macro-steps ahead on the coarse plan",
                                     "eval", ge=1, le=100)
    helm_fine_samples: int = param(256, "HELM: CEM samples per iteration of the fine level (to the subgoal)", "eval",
                                   ge=1, le=100_000)
    no_coarse_num_samples: int = param(1024, "HELM without coarse level: CEM samples per iteration (fine actions; "
                                       "tuned: tune.py --tuning-sweep flat)",
                                       "eval", ge=1, le=100_000)
    cem_horizon: int = param(8, "CEM's planning horizon (PlaNet-style, capped at the remaining budget; tuned: "
                             "tune.py --tuning-sweep flat)", "eval",
                             ge=1, le=1000)
    cem_num_samples: int = param(256, "CEM samples per iteration", "eval", ge=1, le=100_000)
    cem_num_iters: int = param(4, "CEM iterations", "eval", ge=1, le=1000)
    cem_elite_frac: float = param(0.1, "elite fraction of every CEM (HELM's coarse level included)", "eval", gt=0, le=1)
    gd_steps: int = param(10, "gradient steps of the flat planner", "eval", ge=1, le=10_000)
    gd_lr: float = param(0.1, "learning rate of the flat planner", "eval", gt=0)
    gumbel_tau: float = param(1.0, "Gumbel-Softmax temperature", "eval", gt=0)
    softmin_temperature: float = param(1.0, "temperature of the soft-min over the plan's energies (gradient planner)",
                                       "eval", gt=0)
    depth_cost: float = param(0.001, "added per planned step to the energy, so earlier arrival wins ties", "eval", ge=0)
    budget_scales: list[float] = param([0.25, 0.5], "Pareto: extra budgets (x each planner's samples or gradient "
                                       "steps) evaluated at T = 50 and 80", "eval", gt=0, le=100)
    map_seeds: list[int] = param([0, 1, 2, 3, 4], "reach_map.py: seeds (each trains a world model and both "
                                 "energy families)", "eval", ge=0, le=2**32 - 1)
    map_episodes: int = param(20, "reach_map.py: tasks per seed and horizon (T = 50 and 80; the same tasks for every "
                              "planner and energy)", "eval", ge=1, le=1000)
    layout_sweep: list[int] = param([10, 100, 1000], "sweep_layouts.py: numbers of training layouts (the total "
                                    "number of random walks stays num_train_layouts x walks_per_layout)", "eval",
                                    ge=1, le=10_000)
    layout_sweep_seeds: int = param(1, "sweep_layouts.py: how many of `seeds` it runs (each point of each seed "
                                    "trains a unit)", "eval", ge=1, le=1000)
    tuning_sweep: str = param("planning", "tune.py: which sweep to run (planning knobs, cheaper networks for "
                              "the runtime budget, shorter energy training, cheaper world-model training, the "
                              "energy's reach against the coarse horizon, the local energy's push weight, the "
                              "coarse level under the local energy, or the flat planners' knobs)", "run",
                              choices=("planning", "runtime", "energy", "world_model", "reach", "local_push", "coarse",
                                       "flat"))

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "num_train_layouts": 10, "num_test_layouts": 5, "num_tuning_layouts": 5,
                "num_fourrooms_layouts": 5, "walks_per_layout": 10, "limited_data_walks": [100],
                "model_train_steps": 40, "energy_train_steps": 40, "energy_iterations": 16,
                "planning_horizons": [10, 50], "num_eval_episodes": 2, "gd_steps": 2, "helm_num_samples": 16,
                "helm_num_iters": 2, "no_coarse_num_samples": 32, "cem_num_samples": 32, "helm_fine_samples": 16,
                "cem_num_iters": 2, "coarse_horizon": 6,
                "budget_scales": [2.0], "layout_sweep": [2, 10], "map_seeds": [0, 1], "map_episodes": 2}

    def validate(self) -> None:
        super().validate()
        require(self.walk_length >= max(self.model_rollout_steps, self.coarse_stride),
                "walk_length must be >= model_rollout_steps and coarse_stride")
        _require_memory("the replay distances (layouts x 932^2 bytes)",
                        max(self.num_train_layouts, *self.layout_sweep) * 932 ** 2)
        require(self.energy_family == "propagated" or self.energy_reach == 0,
                f"energy_reach {self.energy_reach} needs energy_family propagated (the local energy does not "
                "propagate)")
        require(self.layout_sweep_seeds <= len(self.seeds),
                f"layout_sweep_seeds {self.layout_sweep_seeds} is more than the {len(self.seeds)} seeds")
        _require_memory("CEM's batched samples (episodes x samples x horizon x 8 bytes x 4)",
                        self.num_eval_episodes * max(self.cem_num_samples, self.no_coarse_num_samples,
                                                     self.helm_num_samples) * max(self.planning_horizons)
                        * max(self.budget_scales + [1]) * 32)
        if not self.plots_only:
            from exp3_planning_efficiency.units import unservable_horizon  # needs the mazes (torch)
            problem = unservable_horizon(self)
            require(problem is None, f"planning_horizons: {problem}")


CONFIGS = {"exp1": Exp1Config, "exp2": Exp2Config, "exp3": Exp3Config}


def main(argv: list[str] | None = None) -> None:
    """`python -m common.config {exp1,exp2,exp3} [flags]`: print the resulting config as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in CONFIGS:
        print(f"usage: python -m common.config {{{','.join(CONFIGS)}}} [flags]", file=sys.stderr)
        sys.exit(2)
    cfg = parse(CONFIGS[argv[0]], argv[1:], prog=f"common.config {argv[0]}")
    print(json.dumps(dataclasses.asdict(cfg), indent=2))


if __name__ == "__main__":
    main()
