"""Probe candidate true-system task kinds and success rules (tuning seed by default), true system only.

    python probe_tasks.py      # tuning seed x 64 start states, 7 candidates, T = 10 20 50 100 (~4 min, 1 thread)
    python probe_tasks.py --num-eval-states 16 --planning-horizons 10 20
    python probe_tasks.py --probe-seeds 100 0 1 2 --candidates "random (stage two)" "far h5 d0.4-1 K64"
    python probe_tasks.py --candidates "far h5 d0.4-1 K64" --success-rule relative --planning-horizons 50 100 \
        --grad-bounds 0:0 1:0 0.1:0 0:10 0:20 1:20    # bounded gradients for the true_clipped row (~9 min)

No learned model is loaded or trained: per candidate and T it prints d0 (the zero-action endpoint's
distance to the target), the floors (zero actions, one fresh draw of the candidate's own proposal,
fresh i.i.d. actions) and the planner on the true dynamics (the ceiling, `evaluation.control`: open
loop and closed loop) under each success rule. All candidates' tasks run in one batch. With
--grad-bounds CLIP:WINDOW ..., also the ceiling open loop with bounded gradients (`planner.py`) on the
first candidate's tasks, judged by the config's success rule. Prints only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from common.cli import command
from common.cli_parse import parse
from common.config import Exp1Config
from common.runs import setup_torch
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.evaluation import control, open_loop, true_error
from exp1_spectral_cliff.tasks import Tasks, execute, floor_actions, make_tasks, random_actions, solved

PROG = "exp1_spectral_cliff/probe_tasks.py"


def far(hold: int, draws: int, min_distance: float, max_distance: float) -> dict:
    """The task fields of a far-task candidate."""
    return {"task_kind": "far", "task_hold_steps": hold, "task_draws": draws, "task_min_distance": min_distance,
            "task_max_distance": max_distance}


CANDIDATES = {  # name -> task fields (probed on the tuning seed; see the README's tasks section)
    "random (stage two)": {"task_kind": "random"},
    "persistent h10": far(10, 1, 0.0, 100.0),
    "far h10 d>=0.4 K16": far(10, 16, 0.4, 100.0),
    "far h5 d>=0.4 K16": far(5, 16, 0.4, 100.0),
    "far h5 d0.4-1 K32": far(5, 32, 0.4, 1.0),
    "far h5 d0.4-1 K64": far(5, 64, 0.4, 1.0),
    "far h10 d0.4-1 K32": far(10, 32, 0.4, 1.0),
}
RULES = {"abs 0.1": {"success_rule": "absolute", "planning_tolerance": 0.1},
         "rel 0.1": {"success_rule": "relative", "success_ratio": 0.1},
         "rel 0.2": {"success_rule": "relative", "success_ratio": 0.2},
         "rel 0.25": {"success_rule": "relative", "success_ratio": 0.25}}


def concat(parts: list[Tasks]) -> Tasks:
    """Tasks of several candidates side by side on the example axis (same seeds, same true step)."""
    def cat(name):
        return torch.cat([getattr(p, name) for p in parts], dim=1)
    return Tasks(parts[0].true_step, cat("s0"), cat("target"), cat("actions"), cat("zero_end"))


def grad_bound(text: str) -> tuple[float, int]:
    """"CLIP:WINDOW" -> (clip >= 0, window >= 0)."""
    try:
        clip, window = text.split(":")
        bound = float(clip), int(window)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not CLIP:WINDOW (e.g. 0.1:0)") from None
    if bound[0] < 0 or bound[1] < 0 or not np.isfinite(bound[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: clip and window must be >= 0")
    return bound


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog=PROG, add_help=False)
    own.add_argument("--probe-seeds", type=int, nargs="+", default=None,
                     help="seeds to probe (default: the tuning seed only; never more than it and seeds 0-2)")
    own.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    own.add_argument("--grad-bounds", nargs="+", default=[], metavar="CLIP:WINDOW", type=grad_bound,
                     help="bounded-gradient settings of the ceiling to probe, open loop (0 = off)")
    args, rest = own.parse_known_args(sys.argv[1:] if argv is None else argv)
    cfg = parse(Exp1Config, rest, prog=PROG)
    if cfg.dry_run:
        return 0
    device = setup_torch(cfg)
    seeds, B = args.probe_seeds or [cfg.tuning_seed], cfg.num_eval_states
    datasets = {s: make_dataset(cfg, s) for s in seeds}
    print(f"seeds {seeds} x {B} start states per candidate; ceiling = the planner on the true "
          f"system ({cfg.planning_max_iters} iterations, stop at {cfg.control_tolerance}; closed loop re-plans every "
          f"{cfg.mpc_interval} steps)")
    total = time.perf_counter()
    for T in cfg.planning_horizons:
        start = time.perf_counter()
        cands = {name: dataclasses.replace(cfg, **CANDIDATES[name]) for name in args.candidates}
        tasks = {name: make_tasks(c, datasets, seeds, T, device) for name, c in cands.items()}
        for name, t in tasks.items():  # the generating actions reach the target in the true system
            assert torch.allclose(execute(t.true_step, t.s0, t.actions), t.target, atol=1e-9), name
        ceiling = control(cfg, tasks[next(iter(tasks))].true_step, torch.float64, datasets, seeds, T, device,
                          concat(list(tasks.values())))
        iid = random_actions(seeds, "exp1-probe-iid-floor", B, T, device)
        print(f"\nT = {T} ({time.perf_counter() - start:.0f} s, {len(seeds)} x {B} tasks per candidate)")
        print(f"{'candidate':22s} {'d0 q10/q50/q90':>20s} {'rule':9s} {'zero':>5s} {'rand':>5s} {'iid':>5s} "
              f"{'open':>5s} {'closed':>6s}")
        for i, (name, c) in enumerate(cands.items()):
            t, sl = tasks[name], slice(i * B, (i + 1) * B)
            d0 = t.d0.cpu().numpy()
            errors = {"zero": d0,
                      "rand": (execute(t.true_step, t.s0, floor_actions(c, seeds, T, device)) - t.target).norm(dim=-1),
                      "iid": (execute(t.true_step, t.s0, iid) - t.target).norm(dim=-1),
                      "open": ceiling["error_open"][:, sl], "closed": ceiling["error_closed"][:, sl]}
            q = " / ".join(f"{v:.2f}" for v in np.percentile(d0, [10, 50, 90]))
            for r, (rule, fields) in enumerate(RULES.items()):
                rc = dataclasses.replace(c, **fields)
                cells = " ".join(f"{solved(rc, np.asarray(e), d0).mean():5.0%}" for e in errors.values())
                print(f"{name if r == 0 else '':22s} {q if r == 0 else '':>20s} {rule:9s} {cells}")
            print(f"{'':22s} ceiling median error open {np.median(errors['open']):.3f}, closed "
                  f"{np.median(errors['closed']):.3f}; d0 in [{c.task_min_distance}, {c.task_max_distance}]: "
                  f"{((d0 >= c.task_min_distance) & (d0 <= c.task_max_distance)).mean():.0%}", flush=True)
        first = tasks[args.candidates[0]]
        for clip, window in args.grad_bounds:
            plan, iters, seconds = open_loop(cfg, first.true_step, torch.float64, first, clip=clip, window=window)
            error = true_error(first, plan).cpu().numpy()
            print(f"bounded gradients clip {clip} window {window}, {args.candidates[0]}: open loop solved "
                  f"{solved(cands[args.candidates[0]], error, first.d0.cpu().numpy()).mean():.0%} "
                  f"({cfg.success_rule}), median error {np.median(error):.3f}, median iterations "
                  f"{np.median(iters.cpu().numpy()):.0f} ({seconds:.0f} s)", flush=True)
    print(f"\nruntime {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
