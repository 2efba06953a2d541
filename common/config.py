"""Experiment configs: one dataclass per experiment, and `parse()` which turns one into a CLI.

Every field carries a one-line doc (`metadata["help"]`) that becomes its `--help` text. Field
`foo_bar` is set from the command line as `--foo-bar VALUE` (lists: `--horizons 5 10 20`,
booleans: `--quick` / `--no-quick`). `quick` selects a tiny preset for smoke runs; flags given
explicitly on the command line win over the preset.

`python -m common.config exp1 [flags]` prints the resulting config as JSON (handy to check an
override before launching a long run).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A config value is invalid; the message is one line meant for the user."""


def param(default, help: str):
    """A dataclass field with a default (lists are copied) and a one-line help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    """Fields every experiment shares."""

    seeds: list[int] = param([0, 1, 2], "seeds of the reported runs (the tuning seed is separate)")
    tuning_seed: int = param(100, "seed used only for hyper-parameter sweeps, never reported")
    device: str = param("auto", "auto | cpu | cuda (auto = cuda when available)")
    out_dir: str = param("", "where plots/, results/ and checkpoints/ go ('' = the experiment folder)")
    quick: bool = param(False, "tiny preset for smoke runs (seconds, numbers not meaningful)")
    quiet: bool = param(False, "no progress bars")
    strict: bool = param(False, "exit 1 when a success criterion FAILs (default: exit 0)")
    num_threads: int = param(1, "torch CPU threads per process (1 is fastest on 2 cores here)")

    experiment_folder = ""  # class attribute, set by subclasses

    def quick_overrides(self) -> dict:
        """Field values of the `--quick` preset."""
        return {"seeds": self.seeds[:1]}

    def output_dir(self) -> Path:
        """Resolved output folder."""
        return Path(self.out_dir) if self.out_dir else REPO_ROOT / self.experiment_folder

    def validate(self) -> None:
        """Raise ConfigError (one line) on the first bad value."""
        _require(len(self.seeds) > 0, "seeds must not be empty")
        _require(len(set(self.seeds)) == len(self.seeds), f"seeds must be distinct, got {self.seeds}")
        _require(self.tuning_seed not in self.seeds,
                 f"tuning_seed {self.tuning_seed} must differ from the reported seeds {self.seeds}")
        _require(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        _require(self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}")
        _require_writable(self.output_dir())


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _require_positive(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        values = value if isinstance(value, list) else [value]
        _require(len(values) > 0, f"{name} must not be empty")
        bad = [v for v in values if not v > 0]
        _require(not bad, f"{name} must be > 0, got {value}")


def _require_non_negative(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(value >= 0, f"{name} must be >= 0, got {value}")


def _require_choice(cfg, name: str, choices) -> None:
    values = getattr(cfg, name)
    for v in values if isinstance(values, list) else [values]:
        _require(v in choices, f"{name}: unknown value {v!r} (choose from {', '.join(map(str, choices))})")


def _require_writable(path: Path) -> None:
    """The folder exists and is writable, or can be created under a writable ancestor."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    _require(probe.is_dir(), f"out_dir {path} is not a folder ({probe} is a file)")
    _require(os.access(probe, os.W_OK | os.X_OK), f"out_dir {path} is not writable")


@dataclass
class Exp1Config(RunConfig):
    """Experiment 1, spectral cliff: Jacobian growth of learned controlled-Lorenz world models."""

    experiment_folder = "exp1_spectral_cliff"

    # system and data
    dt: float = param(0.01, "RK4 integration step of the true Lorenz system")
    dt_model: float = param(0.05, "time covered by one world-model step (a multiple of dt)")
    control_scale: float = param(0.5, "forcing c: s_dot += c * std_i * u_i, u in [-1, 1]^3")
    burn_in_time: float = param(20.0, "time units integrated before recording (reach the attractor)")
    num_train_trajectories: int = param(2000, "training trajectories")
    num_test_trajectories: int = param(200, "test trajectories")
    trajectory_steps: int = param(300, "model steps per trajectory")
    # model
    hidden_dim: int = param(128, "width of the residual MLP step model")
    num_layers: int = param(2, "hidden layers of the residual MLP step model")
    # training
    variants: list[str] = param(["flat", "spectral", "hf", "helm"], "ablation variants to train")
    train_protocol: str = param("short", "short: one model per variant trained on short rollouts; "
                                "per_horizon: the seed's one model per T trained on T-step rollouts")
    train_rollout_steps: int = param(1, "rollout length of the short protocol's loss (1 = teacher forcing)")
    train_steps: int = param(3000, "optimizer steps per model")
    batch_size: int = param(256, "training batch size (windows)")
    lr: float = param(1e-3, "Adam learning rate (cosine-decayed to 0 over train_steps)")
    lambda_spectral: float = param(0.1, "weight of the hinge on the per-step spectral norm (0.1: smallest value "
                                   "meeting the norm criteria in sweep_lambda.py on the tuning seed; the seed had 1e-3)")
    lambda_hf: float = param(1.0, "weight of the HF-invariance loss of the transition")
    hf_noise_sigma: float = param(0.05, "std of the input noise of the HF-invariance loss (normalized units)")
    # analysis
    horizons: list[int] = param([5, 10, 20, 50, 100, 200], "rollout horizons T of the Jacobian analysis")
    num_eval_states: int = param(64, "test initial states per horizon")
    planning_horizons: list[int] = param([10, 20, 50, 100], "horizons of the planning-convergence test")
    planning_max_iters: int = param(200, "Adam iteration budget of the planning test")
    planning_lr: float = param(0.05, "Adam learning rate on the action sequence")
    planning_tolerance: float = param(0.1, "success: ||s_T - target|| below this (normalized units)")
    lambda_sweep: list[float] = param([0.0, 1e-3, 1e-2, 3e-2, 1e-1, 2e-1, 3e-1, 1.0],
                                      "lambda_spectral values of the tuning-seed trade-off sweep")
    growth_fit_min_horizon: int = param(20, "growth rate = slope of log-norm vs time over horizons >= this")
    divergence_threshold: float = param(1e3, "final training loss above this (or NaN/Inf) marks a model diverged")
    plots_only: bool = param(False, "rebuild metrics and plots from the saved arrays (results/exp1_arrays.npz)")

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "num_train_trajectories": 64, "num_test_trajectories": 16,
                "trajectory_steps": 60, "burn_in_time": 5.0, "train_steps": 40, "batch_size": 64,
                "horizons": [5, 20, 50, 100, 200], "num_eval_states": 8, "planning_horizons": [10],
                "planning_max_iters": 20, "lambda_sweep": [0.0, 0.1]}

    def validate(self) -> None:
        super().validate()
        _require_positive(self, "dt", "dt_model", "burn_in_time", "num_train_trajectories",
                          "num_test_trajectories", "trajectory_steps", "hidden_dim", "num_layers",
                          "train_rollout_steps", "train_steps", "batch_size", "lr", "hf_noise_sigma",
                          "horizons", "num_eval_states", "planning_horizons", "planning_max_iters",
                          "planning_lr", "planning_tolerance", "growth_fit_min_horizon", "divergence_threshold")
        _require_non_negative(self, "control_scale", "lambda_spectral", "lambda_hf")
        _require(all(v >= 0 for v in self.lambda_sweep), f"lambda_sweep must be >= 0, got {self.lambda_sweep}")
        ratio = self.dt_model / self.dt
        _require(abs(ratio - round(ratio)) < 1e-6, f"dt_model {self.dt_model} must be a multiple of dt {self.dt}")
        _require(len(self.variants) > 0, "variants must not be empty")
        _require_choice(self, "variants", ("flat", "spectral", "hf", "helm"))
        _require_choice(self, "train_protocol", ("short", "per_horizon"))
        _require(max(self.horizons) <= self.trajectory_steps or self.train_protocol == "short",
                 "per_horizon training needs trajectory_steps >= max(horizons)")
        _require(self.train_rollout_steps < self.trajectory_steps,
                 f"train_rollout_steps must be < trajectory_steps ({self.trajectory_steps})")
        _require(self.num_eval_states <= self.num_test_trajectories,
                 f"num_eval_states {self.num_eval_states} must be <= num_test_trajectories {self.num_test_trajectories}")
        _require(self.trajectory_steps >= 10, "trajectory_steps must be >= 10 (10-step RMSE)")


@dataclass
class Exp2Config(RunConfig):
    """Experiment 2, funnel heatmap: mollification of a rugged 2-D energy."""

    experiment_folder = "exp2_funnel_heatmap"

    # true energy E*(x) = 0.5 k ||x||^2 + A sum_i (1 - cos(w x_i)) on [-L, L]^2
    domain_half_width: float = param(0.3, "L: the domain is [-L, L]^2")
    quadratic_k: float = param(1.0, "k: curvature of the funnel")
    ripple_amplitude: float = param(0.012, "A: amplitude of the cosine ripples")
    ripple_frequency: float = param(45.0, "w: angular frequency of the ripples")
    # model
    num_fourier_features: int = param(64, "random Fourier features of the input encoding")
    fourier_scale: float = param(30.0, "std of the random Fourier frequencies")
    hidden_dim: int = param(128, "width of the energy MLP")
    num_layers: int = param(2, "hidden layers of the energy MLP")
    # training
    train_steps: int = param(2000, "Adam steps per model")
    batch_size: int = param(512, "training batch size (points sampled uniformly from the domain)")
    lr: float = param(1e-3, "Adam learning rate (cosine decay to 0)")
    train_margin: float = param(0.1, "training points come from [-(1+m)L, (1+m)L]^2, so the fit holds up to the edge")
    hf_form: str = param("mollified_target", "HELM loss: mollified_target (fit E* at x+delta) | "
                         "consistency (the seed's lambda_hf * (E(x+delta) - E(x))^2)")
    lambda_hf: float = param(10.0, "weight of the consistency loss (hf_form=consistency; 10 from the "
                             "tuning-seed sweep, the seed's 1.0 gave no funnel at any sigma)")
    hf_noise_sigma: float = param(0.05, "std of delta ~ N(0, sigma^2 I)")
    # analysis
    grid_resolution: int = param(200, "grid for energy plots and spurious-minima counts")
    basin_grid_resolution: int = param(50, "start grid (per side) of the basin-coverage test")
    gd_steps_basin: int = param(300, "gradient-descent steps on the landscape")
    gd_lr_basin: float = param(0.02, "gradient-descent step size (E* has curvature <= k + A w^2 = 25)")
    polish_steps: int = param(300, "descent steps on the TRUE energy after the landscape's")
    sweep_sigmas: list[float] = param([0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2],
                                      "hf_noise_sigma values of the tuning-seed sweep")
    sweep_lambdas: list[float] = param([0.1, 1.0, 10.0], "lambda_hf values of the tuning-seed sweep (consistency)")

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "train_steps": 100, "grid_resolution": 40,
                "basin_grid_resolution": 10, "gd_steps_basin": 50, "polish_steps": 50,
                "sweep_sigmas": [0.05], "sweep_lambdas": [1.0], "hidden_dim": 32, "batch_size": 128}

    def validate(self) -> None:
        super().validate()
        _require_positive(self, "domain_half_width", "quadratic_k", "ripple_frequency", "num_fourier_features",
                          "fourier_scale", "hidden_dim", "num_layers", "train_steps", "batch_size", "lr",
                          "hf_noise_sigma", "grid_resolution", "basin_grid_resolution", "gd_steps_basin",
                          "gd_lr_basin", "sweep_sigmas", "sweep_lambdas")
        _require_non_negative(self, "ripple_amplitude", "lambda_hf", "polish_steps", "train_margin")
        _require(all(v >= 0 for v in self.sweep_lambdas), f"sweep_lambdas must be >= 0, got {self.sweep_lambdas}")
        _require_choice(self, "hf_form", ("mollified_target", "consistency"))


EXP3_ENV_IDS = ("HELM-SpanningMaze-v0",)


@dataclass
class Exp3Config(RunConfig):
    """Experiment 3, planning efficiency: coarse-to-fine planning through a learned MiniGrid model."""

    experiment_folder = "exp3_planning_efficiency"

    env_id: str = param("HELM-SpanningMaze-v0", "registered MiniGrid environment")
    # data
    num_walks: int = param(2000, "random-walk episodes collected for world-model training")
    walk_length: int = param(64, "steps per random walk")
    # world model
    latent_dim: int = param(16, "latent size")
    hidden_dim: int = param(128, "MLP width of the world model and the energy")
    model_train_steps: int = param(2000, "world-model training steps")
    model_batch_size: int = param(256, "batch size (windows) of world-model training")
    model_lr: float = param(3e-3, "Adam learning rate of the world model (cosine decay)")
    model_rollout_steps: int = param(8, "latent rollout length of the prediction loss")
    lambda_spectral: float = param(1e-3, "HELM: weight of the spectral hinge on the fine transition")
    energy_train_steps: int = param(2000, "goal-energy (quasimetric distance head) training steps")
    energy_batch_size: int = param(1024, "state pairs per goal-energy training step")
    energy_lr: float = param(3e-3, "Adam learning rate of the goal energy (cosine decay)")
    hf_noise_sigma: float = param(0.0, "HELM: input noise of the energy (x latent std); 0 = off (see tune.py)")
    # planning
    planning_horizons: list[int] = param([10, 20, 30, 50, 80], "task horizons T (BFS distance in (T/2, T])")
    num_eval_episodes: int = param(30, "evaluation episodes per horizon per seed")
    planners: list[str] = param(["flat", "helm", "cem", "random", "bfs"], "planners to evaluate")
    replan_every: int = param(4, "every planner re-plans after this many real steps")
    coarse_stride: int = param(4, "fine steps per coarse step (HELM)")
    helm_top_k: int = param(81, "HELM: best coarse macro-actions re-scored by the fine model (81 = all 3^4)")
    helm_coarse_depth: int = param(1, "HELM: coarse steps of lookahead (1 or 2)")
    snap_latents: bool = param(True, "discrete planners (HELM, CEM) snap predicted latents to encoded states")
    gd_steps: int = param(100, "gradient steps of the flat planner")
    gd_lr: float = param(0.1, "learning rate of the flat planner")
    gumbel_tau: float = param(1.0, "Gumbel-Softmax temperature")
    softmin_temperature: float = param(1.0, "temperature of the soft-min over the plan's energies (gradient planner)")
    depth_cost: float = param(0.001, "added per planned step to the energy, so earlier arrival wins ties")
    cem_horizon: int = param(16, "CEM's planning horizon (PlaNet-style, capped at the remaining budget)")
    cem_num_samples: int = param(500, "CEM samples per iteration")
    cem_num_iters: int = param(10, "CEM iterations")
    cem_elite_frac: float = param(0.1, "CEM elite fraction")
    jobs: int = param(1, "seeds run in parallel worker processes (num_threads torch threads each)")

    def quick_overrides(self) -> dict:
        return {**super().quick_overrides(), "num_walks": 200, "model_train_steps": 100,
                "energy_train_steps": 100, "planning_horizons": [10, 20], "num_eval_episodes": 4,
                "gd_steps": 10, "cem_num_samples": 64, "cem_num_iters": 3}

    def validate(self) -> None:
        super().validate()
        _require_choice(self, "env_id", EXP3_ENV_IDS)
        _require_positive(self, "num_walks", "walk_length", "latent_dim", "hidden_dim", "model_train_steps",
                          "model_batch_size", "model_lr", "model_rollout_steps", "energy_train_steps",
                          "energy_batch_size", "energy_lr", "planning_horizons",
                          "num_eval_episodes", "replan_every", "helm_top_k", "gd_steps", "gd_lr", "gumbel_tau",
                          "softmin_temperature", "cem_horizon", "cem_num_samples", "cem_num_iters")
        _require(1 <= self.coarse_stride <= 6,
                 f"coarse_stride must be in 1..6 (HELM enumerates all 3^k macro-actions), got {self.coarse_stride}")
        _require_non_negative(self, "lambda_spectral", "hf_noise_sigma", "depth_cost")
        _require(self.walk_length >= max(self.model_rollout_steps, self.coarse_stride),
                 "walk_length must be >= model_rollout_steps and coarse_stride")
        _require(0 < self.cem_elite_frac <= 1, f"cem_elite_frac must be in (0, 1], got {self.cem_elite_frac}")
        _require(self.jobs >= 1, f"jobs must be >= 1, got {self.jobs}")
        _require(self.helm_coarse_depth in (1, 2), f"helm_coarse_depth must be 1 or 2, got {self.helm_coarse_depth}")
        _require(len(self.planners) > 0, "planners must not be empty")
        _require_choice(self, "planners", ("flat", "helm", "cem", "random", "bfs"))


CONFIGS = {"exp1": Exp1Config, "exp2": Exp2Config, "exp3": Exp3Config}


# ----------------------------------------------------------------------------------------------
# CLI


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exits 2, with a suggestion for typos."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments"):
            flags = [opt for action in self._actions for opt in action.option_strings]
            unknown = [w for w in message.split(":", 1)[1].split() if w.startswith("-")]
            hints = [m for w in unknown for m in difflib.get_close_matches(w.split("=")[0], flags, 1)]
            if hints:
                message += f" (did you mean {', '.join(hints)}?)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _element_type(tp):
    """The argparse `type` and `nargs` of a field type like int, float, list[int], bool."""
    origin = typing.get_origin(tp)
    if origin is list:
        return typing.get_args(tp)[0], "+"
    return tp, None


def build_parser(config_cls: type, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one `--flag` per dataclass field, defaults suppressed."""
    parser = _OneLineParser(prog=prog, description=config_cls.__doc__, allow_abbrev=False,
                            argument_default=argparse.SUPPRESS, usage="%(prog)s [--flag VALUE ...] (see --help)")
    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "") + f" (default: {getattr(defaults, f.name)})"
        tp, nargs = _element_type(hints[f.name])
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, type=tp, nargs=nargs, metavar=f.name.upper(), help=help_text)
    return parser


def parse(config_cls: type, argv: list[str] | None = None, prog: str | None = None):
    """Build a validated config from the command line; on any error print one line and exit 2.

    Order: dataclass defaults, then the `--quick` preset, then the flags given explicitly.
    """
    parser = build_parser(config_cls, prog)
    given = vars(parser.parse_args(sys.argv[1:] if argv is None else argv))
    cfg = config_cls()
    if given.get("quick", False):
        cfg = dataclasses.replace(cfg, quick=True, **cfg.quick_overrides())
    cfg = dataclasses.replace(cfg, **given)
    try:
        cfg.validate()
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    return cfg


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
