"""The README's results section, generated from each experiment's `results/metrics.json`.

    python -m common.report            # rewrite README.md between the RESULTS markers, and the experiment
                                       # READMEs' tables (common/readme_tables.py)
    python -m common.report --check    # exit 1 when any of them differs from what it would write

Per experiment: a one-line summary (criteria passed), the criteria table straight from metrics.json,
runtime, machine, the command that reproduces the run, and the figures in its `plots/`. An
experiment without metrics.json is listed as "not run yet". Nothing here depends on the clock or
on the machine running this command, so the output is a pure function of the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from common import readme_tables
from common.config import CONFIGS
from common.fields import fields_with_role
from common.output_folder import REPO_ROOT
from common.runs import to_jsonable

BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"
EXPERIMENTS = [  # (folder, title, config class)
    ("exp1_spectral_cliff", "Experiment 1: spectral cliff", CONFIGS["exp1"]),
    ("exp2_funnel_heatmap", "Experiment 2: funnel heatmap", CONFIGS["exp2"]),
    ("exp3_planning_efficiency", "Experiment 3: planning efficiency", CONFIGS["exp3"]),
]


def load_metrics(root: Path, folder: str) -> dict | None:
    path = root / folder / "results" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def format_measured(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _cell(text) -> str:
    """Table-cell safe text (a `|` would split the cell)."""
    return str(text).replace("|", "\\|")


def command_flags(config: dict, config_cls) -> list[str] | None:
    """The flags that turn `config_cls`'s defaults (or its --quick preset) into `config`, presentation
    fields (role "run") left out; None when `config` has fields the class no longer has (written by older code)."""
    defaults = config_cls()
    flags = []
    if config.get("quick"):
        defaults = dataclasses.replace(defaults, quick=True, **defaults.quick_overrides())
        flags.append("--quick")
    base = to_jsonable(dataclasses.asdict(defaults))
    if set(config) - set(base):
        return None
    for name, value in config.items():
        if name in fields_with_role(config_cls, "run") or name == "quick" or base[name] == value:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            flags.append(" ".join([flag, *map(str, value)]))
        else:
            flags.append(f"{flag} {value}")
    return flags


def describe_environment(env: dict) -> str:
    keys = ("python", "torch", "numpy", "platform", "cpu_count", "device", "torch_threads")
    labels = {"cpu_count": "CPUs", "torch_threads": "torch threads"}
    return ", ".join(f"{labels.get(k, k)} {env[k]}" for k in keys if k in env)


def summary_line(title: str, metrics: dict | None) -> str:
    if metrics is None:
        return f"- **{title}**: not run yet."
    criteria = metrics.get("criteria", [])
    passed = sum(bool(c["passed"]) for c in criteria)
    failed = [c["name"] for c in criteria if not c["passed"]]
    line = f"- **{title}**: {passed}/{len(criteria)} criteria pass"
    line += f"; FAIL: {'; '.join(failed)}." if failed else "."
    if metrics.get("config", {}).get("quick"):
        line += " (a `--quick` smoke run: numbers not meaningful)"
    return line


def render_experiment(root: Path, folder: str, title: str, config_cls, metrics: dict | None) -> str:
    lines = [f"### {title}", ""]
    if metrics is None:
        lines += [f"Not run yet (no `{folder}/results/metrics.json`).", ""]
        return "\n".join(lines)
    lines += ["| criterion | target | measured | result |", "|---|---|---|---|"]
    for c in metrics.get("criteria", []):
        lines.append(f"| {_cell(c['name'])} | {_cell(c['target'])} | {format_measured(c['measured'])} | "
                     f"{'PASS' if c['passed'] else 'FAIL'} |")
    lines.append("")
    runtime = metrics.get("runtime_seconds")
    seeds = metrics.get("seeds")
    lines.append(f"- Runtime: {'n/a' if runtime is None else f'{runtime:.0f} s'}"
                 + (f" (seeds {', '.join(map(str, seeds))})" if seeds else ""))
    lines.append(f"- Machine: {describe_environment(metrics.get('environment', {}))}")
    flags = command_flags(metrics.get("config", {}), config_cls)
    if flags is None:
        lines.append(f"- Command: `cd {folder} && python run_experiment.py` with the config in "
                     f"`{folder}/results/config.json` (written by an older version of the config class)")
    else:
        lines.append(f"- Command: `cd {folder} && python run_experiment.py{''.join(' ' + f for f in flags)}`"
                     + ("" if flags else " (all defaults)") + f"; config in `{folder}/results/config.json`")
    plots = sorted((root / folder / "plots").glob("*.png"))
    if plots:
        lines += ["", " ".join(f'<img src="{p.relative_to(root).as_posix()}" width="320" alt="{p.stem}">'
                               for p in plots)]
    lines.append("")
    return "\n".join(lines)


def render_section(root: Path = REPO_ROOT) -> str:
    """The text between the markers (without them), a pure function of the files under `root`."""
    loaded = [(folder, title, cls, load_metrics(root, folder)) for folder, title, cls in EXPERIMENTS]
    lines = ["_Generated by `python -m common.report` from each `results/metrics.json`; do not edit by hand._",
             ""]
    lines += [summary_line(title, metrics) for _, title, _, metrics in loaded]
    lines.append("")
    lines += [render_experiment(root, folder, title, cls, metrics) for folder, title, cls, metrics in loaded]
    return "\n".join(lines).rstrip() + "\n"


def split_readme(text: str) -> tuple[str, str, str]:
    """(before and BEGIN, the section, END and after); ValueError when the markers are missing."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"README must contain exactly one {BEGIN} followed by one {END}")
    head, rest = text.split(BEGIN)
    section, tail = rest.split(END)
    return head + BEGIN, section, END + tail


def updated_readme(text: str, section: str) -> str:
    head, _, tail = split_readme(text)
    return f"{head}\n{section}{tail}"


def is_up_to_date(readme: Path, root: Path = REPO_ROOT) -> bool:
    text = readme.read_text()
    return updated_readme(text, render_section(root)) == text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.report", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README's results section or an experiment README's table is out of date")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this repo)")
    args = parser.parse_args(argv)
    readme = args.root / "README.md"
    try:
        text = readme.read_text()
        new = updated_readme(text, render_section(args.root))
        stale = readme_tables.stale_readmes(args.root, write=not args.check)
    except (OSError, ValueError, KeyError) as err:
        print(f"common.report: error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print("common.report: README.md results section is out of date; run `python -m common.report`",
                  file=sys.stderr)
        for path in stale:
            print(f"common.report: the tables of {path.relative_to(args.root)} are out of date; "
                  "run `python -m common.report`", file=sys.stderr)
        if new != text or stale:
            return 1
        print("README.md results section and the experiment READMEs' tables are up to date")
        return 0
    if new != text:
        readme.write_text(new)
    print(f"wrote the results section of {readme}"
          + "".join(f"\nwrote the tables of {path}" for path in stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
