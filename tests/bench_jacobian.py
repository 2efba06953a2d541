"""Benchmark: exact rollout action-Jacobian log-norm vs a forward rollout and a naive autograd loop.

Not collected by pytest. Run: `python tests/bench_jacobian.py [--threads N]`. Prints, for a residual
MLP step (state 3, action 3, 2x128 tanh), batch 64, T in 10/50/100/200, the median time of
(a) our exact log ||ds_T/da_{0:T-1}||_F (`common.jacobian_utils.rollout_log_norms`), (b) one plain
forward rollout, (c) a naive baseline: per example, `torch.autograd.grad` of each output row
through the rollout; and the ratios. It also checks (a) and (c) agree.
"""

import argparse
import statistics
import time

import torch

from common.jacobian_utils import rollout, rollout_log_norms

B, STATE, ACTION, HIDDEN = 64, 3, 3, 128


def make_step():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(STATE + ACTION, HIDDEN), torch.nn.Tanh(),
                              torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, STATE))
    return lambda s, a: s + 0.1 * net(torch.cat([s, a], dim=-1))


def naive_log_action_norm(step, s0, actions):
    """One autograd.grad call per example and output row, through the whole rollout."""
    out = []
    for b in range(s0.shape[0]):
        u = actions[b].clone().requires_grad_(True)
        s = s0[b]
        for t in range(u.shape[0]):
            s = step(s, u[t])
        rows = [torch.autograd.grad(s[i], u, retain_graph=i < STATE - 1)[0] for i in range(STATE)]
        out.append(torch.log(torch.stack(rows).norm()))
    return torch.stack(out)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = make_step()
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {B}, median of {args.repeats}")
    print(f"{'T':>5} {'exact (ms)':>11} {'forward (ms)':>13} {'naive (ms)':>11} {'naive/exact':>12} "
          f"{'exact/forward':>14}")
    for T in (10, 50, 100, 200):
        torch.manual_seed(T)
        s0, actions = torch.randn(B, STATE), torch.rand(B, T, ACTION) * 2 - 1
        exact = rollout_log_norms(step, s0, actions)["log_action"][:, -1]
        naive = naive_log_action_norm(step, s0, actions)
        torch.testing.assert_close(exact.float(), naive, atol=1e-3, rtol=1e-4)
        t_exact = median_time(lambda: rollout_log_norms(step, s0, actions), args.repeats)
        with torch.no_grad():
            t_forward = median_time(lambda: rollout(step, s0, actions), args.repeats)
        t_naive = median_time(lambda: naive_log_action_norm(step, s0, actions), max(1, args.repeats // 2))
        print(f"{T:>5} {1e3 * t_exact:>11.1f} {1e3 * t_forward:>13.1f} {1e3 * t_naive:>11.0f} "
              f"{t_naive / t_exact:>11.1f}x {t_exact / t_forward:>13.2f}x")


if __name__ == "__main__":
    main()
