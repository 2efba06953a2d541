"""Benchmark: Experiment 3's exact speedups against the plain formulations they replace.

Not collected by pytest. Run: `python tests/bench_exp3.py [--threads N] [--repeats R]`. Prints the
median time of each pair and the ratio, and checks that both give identical results:
(a) 64 training sweeps of the goal energy, forward + backward: `energy.BellmanFord` vs autograd
    through `F.unfold` / `amin` / `torch.minimum` (batch 16 goals, 19 x 19, as in training);
(b) one coarse transition on 512 states (a planning chunk): action planes concatenated channels-last
    (`WorldModel.coarse_step`) vs `torch.cat` of the expanded planes (the other memory layout);
(c) the energies of 512 observations: `GoalEnergy.read_codes` vs `GoalEnergy.read` of one-hot planes.
"""

import argparse

import torch
import torch.nn.functional as F
from bench_jacobian import median_time  # this folder is on the path when run as a script

from common.config import Exp3Config
from exp3_planning_efficiency.energy import AGENT_PLANES, FAR, BellmanFord, GoalEnergy
from exp3_planning_efficiency.training import build_energy, build_world_model
from exp3_planning_efficiency.world_models import one_hot_codes

W = H = 19


def random_codes(n: int, generator: torch.Generator) -> torch.Tensor:
    """n observation codes (n, W, H): random walls, one agent each."""
    codes = torch.randint(0, 2, (n, W, H), generator=generator, dtype=torch.uint8)
    cells = torch.randint(0, W * H, (n,), generator=generator)
    codes.view(n, -1)[torch.arange(n), cells] = torch.randint(2, 6, (n,), generator=generator, dtype=torch.uint8)
    return codes


def sweeps(energy: GoalEnergy, x_goal: torch.Tensor, hand_written: bool):
    """Gradients of the energy's parameters through 64 training sweeps (x_goal (B, 6, W, H))."""
    energy.zero_grad()
    move, switch = energy.edge_costs(x_goal)
    source = FAR * (1 - x_goal[:, AGENT_PLANES])
    if hand_written:
        V = BellmanFord.apply(move, switch, source, 64)
    else:
        B, C = source.shape[:2]
        V = source
        for _ in range(64):
            neighbours = F.unfold(F.pad(V, (1, 1, 1, 1), value=FAR), 3).reshape(B, C, 9, W, H)
            V = torch.minimum(source, (neighbours + move).amin(2))
            V = torch.minimum(source, (V[:, None] + switch).amin(2))
    V.clamp(max=100).sum().backward()
    return [p.grad.clone() for p in energy.parameters()]


def _as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    cfg = Exp3Config()
    torch.manual_seed(0)
    energy, model = build_energy(cfg, "cpu"), build_world_model(cfg, "cpu").requires_grad_(False)

    x_goal = one_hot_codes(random_codes(16, g))
    pairs = {"(a) 64 energy sweeps, forward + backward (batch 16)":
             (lambda: sweeps(energy, x_goal, True), lambda: sweeps(energy, x_goal, False))}

    z = model.encode_codes(random_codes(512, g))
    macros = F.one_hot(torch.randint(0, 3, (512, cfg.coarse_stride), generator=g), 3).float()

    def coarse_with_cat():
        planes = macros.flatten(1)[..., None, None].expand(512, -1, W, H)
        return z + model.coarse[0](torch.cat([z, planes], dim=1))
    pairs["(b) coarse transition, 512 states"] = (lambda: model.coarse_step(z, macros, 0), coarse_with_cat)

    codes = random_codes(512, g)[:, None]
    V = torch.rand(512, 4, W, H, generator=g) * 100
    pairs["(c) energies of 512 observations"] = (
        lambda: GoalEnergy.read_codes(V, codes),
        lambda: GoalEnergy.read(V, one_hot_codes(codes[:, 0])[:, None]))

    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'':55s} {'ours':>9s} {'plain':>9s} {'ratio':>6s}  identical")
    for name, (ours, plain) in pairs.items():
        same = all(torch.equal(a, b) for a, b in zip(*(_as_list(fn()) for fn in (ours, plain))))  # also warms up
        t_ours, t_plain = median_time(ours, args.repeats), median_time(plain, args.repeats)
        print(f"{name:55s} {t_ours * 1e3:7.1f}ms {t_plain * 1e3:7.1f}ms {t_plain / t_ours:5.1f}x  {same}")


if __name__ == "__main__":
    main()
