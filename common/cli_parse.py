"""The command line of every script: one `--flag` per config field, and `parse()`, which turns the
flags into a validated config or prints one line and exits 2.

Field `foo_bar` is the flag `--foo-bar VALUE` (lists: `--horizons 5 10 20`, booleans: `--quick` /
`--no-quick`), its help the field's `help`. `--quick` selects a tiny preset for smoke runs; flags
given explicitly win over the preset. `--config` reruns a saved run (its `results/config.json`),
`--tag` names a run's folder under runs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import sys
import typing
from pathlib import Path

from common.cli import read_json
from common.fields import ConfigError, check_bounds, fields_with_role, identity, require, short
from common.output_folder import REPO_ROOT, writes_findings

# argparse takes "-inf" or "-1e-3" for a flag; this pattern lets it read them as values, so they
# reach the range checks (and "-inf" is refused as non-finite, not as "expected one argument")
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exits 2, with a suggestion for typos."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments"):
            flags = [opt for action in self._actions for opt in action.option_strings]
            unknown = [w for w in message.split(":", 1)[1].split() if w.startswith("-")]
            hints = [m for w in unknown for m in difflib.get_close_matches(w.split("=")[0], flags, 1)]
            if hints:
                message += f" (did you mean {', '.join(hints)}?)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > 2**62:
        raise argparse.ArgumentTypeError(f"{text} is out of range")
    return value


def _element_type(tp):
    """The argparse `type` and `nargs` of a field type like int, float, list[int], bool."""
    nargs = None
    if typing.get_origin(tp) is list:
        tp, nargs = typing.get_args(tp)[0], "+"
    return {float: _finite_float, int: _bounded_int}.get(tp, tp), nargs


def build_parser(config_cls: type, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one `--flag` per dataclass field, defaults suppressed."""
    parser = _OneLineParser(prog=prog, description=config_cls.__doc__, allow_abbrev=False,
                            argument_default=argparse.SUPPRESS, usage="%(prog)s [--flag VALUE ...] (see --help)")
    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] + f" (default: {getattr(defaults, f.name)})"
        tp, nargs = _element_type(hints[f.name])
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, type=tp, nargs=nargs, metavar=f.name.upper(), help=help_text)
    return parser


def _repeated_flags(argv: list[str]) -> list[str]:
    """Flags given more than once (`--quick --no-quick` counts): argparse would let the last win."""
    seen, repeated = set(), []
    for word in argv:
        if word.startswith("--"):
            name = word[2:].split("=")[0]
            name = name[3:] if name.startswith("no-") else name
            if name in seen:
                repeated.append("--" + name)
            seen.add(name)
    return repeated


def _fits(value, elem: type) -> bool:
    """A JSON value is a valid `elem` (a whole number is a valid float; a bool is no number)."""
    if elem is float and type(value) is float:
        return True
    return type(value) is (int if elem is float else elem) and (type(value) is not int or abs(value) <= 2**62)


def _saved_value(f: dataclasses.Field, tp, value, where: str):
    """A saved config's value of field `f` (type `tp`), checked like the flag's: its type, then its bounds."""
    is_list = typing.get_origin(tp) is list
    elem = typing.get_args(tp)[0] if is_list else tp
    items = value if isinstance(value, list) else [value]
    require(isinstance(value, list) == is_list and all(_fits(v, elem) for v in items),
            f"{where}: {f.name} must be {tp if is_list else elem.__name__}, got {short(json.dumps(value))}")
    items = [float(v) for v in items] if elem is float else items
    value = items if is_list else items[0]
    try:
        check_bounds(f, value)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return value


def _saved_fields(config_cls: type, path: str) -> dict:
    """The number-changing fields (roles model and eval) of the config saved at `path` (a run's
    `results/config.json`, a JSON object of fields), each checked; a field the file lacks keeps its
    default (it was added later). Its run fields are not read, but every name must be a field."""
    where = f"--config {short(path)}"
    try:
        saved = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"{where}: {err.strerror}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{where}: not JSON ({err})") from None
    require(isinstance(saved, dict), f"{where}: not a saved config (a JSON object of fields)")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(saved) - set(fields))
    require(not unknown, f"{where}: unknown field(s) {short(', '.join(map(json.dumps, unknown[:4])))} (a config "
            f"of another experiment, or of another version of {config_cls.__name__}?)")
    hints = typing.get_type_hints(config_cls)
    return {name: _saved_value(fields[name], hints[name], saved[name], where)
            for name in fields_with_role(config_cls, "model", "eval") if name in saved}


def _start(config_cls: type, given: dict):
    """The config the explicit flags then change: the defaults, with the `--quick` preset or a saved config's
    fields (`--config`: a saved quick run holds its preset's values already, so `--quick` is refused with it)."""
    cfg = config_cls()
    if given.get("config"):
        require("quick" not in given, "--quick / --no-quick with --config: the saved config holds quick and, for a "
                "quick run, its preset's values; drop the flag")
        return dataclasses.replace(cfg, **_saved_fields(config_cls, given["config"]))
    if given.get("quick", False):
        return dataclasses.replace(cfg, quick=True, **cfg.quick_overrides())
    return cfg


def _require_given_match_saved(cfg, given: dict) -> None:
    """`--plots-only` draws with the folder's saved config: a number-changing flag given with it (`--quick`
    included) that the saved config contradicts asks for plots of another config."""
    path = cfg.output_dir() / "results" / "config.json"
    saved = read_json(path) if path.is_file() else {}
    new = identity(cfg, "model", "eval")
    differ = sorted(k for k in set(given) & set(new) if isinstance(saved, dict) and k in saved and saved[k] != new[k])
    require(not differ, f"--plots-only: out_dir {cfg.output_dir()} holds results of another config "
            f"({', '.join(differ[:4])} differ); drop those flags to redraw it")


def parse(config_cls: type, argv: list[str] | None = None, prog: str | None = None, redraws: bool = True):
    """Build a validated config from the command line; on any error print one line and exit 2.

    Order: dataclass defaults, then the `--quick` preset, or with `--config PATH` the model and eval
    fields saved in PATH (never its run fields: out_dir, tag, ...), then the flags given explicitly. With
    `--dry-run`, print the output folder and exit 0: the checks are the real run's, none other. The
    output folder is resolved here once (a new runs/ folder's name holds the time), so every later
    `cfg.output_dir()` agrees. `redraws` False: the script has no `--plots-only` mode (the sweeps:
    run_experiment.py --plots-only redraws their figures), so the flag is refused, not ignored.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(config_cls, prog)
    given = vars(parser.parse_args(argv))
    repeated = _repeated_flags(argv)
    if repeated:
        parser.error(f"{repeated[0]} given more than once (contradictory or redundant)")
    if given.get("config"):
        given["config"] = os.path.abspath(given["config"])  # where the rerun came from, recorded in its config.json
    try:
        cfg = dataclasses.replace(_start(config_cls, given), **given)
        require(not (given.get("tag") and "out_dir" in given), "--tag names a folder under runs/; with --out-dir "
                "there is none to name (drop one of them)")
        require(redraws or not cfg.plots_only, "--plots-only: this script has no plots-only mode (run_experiment.py "
                "--plots-only redraws every figure of the folder, this script's included)")
        cfg.validate()
        if cfg.plots_only:
            _require_given_match_saved(cfg, given)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if not cfg.out_dir and not writes_findings(cfg):
        cfg = dataclasses.replace(cfg, out_dir=str(cfg.output_dir()))
    if cfg.dry_run:
        kind = " (the committed findings)" if cfg.output_dir() == REPO_ROOT / cfg.experiment_folder else ""
        print(f"{parser.prog}: config valid; output folder{kind}: {cfg.output_dir()}")
        sys.exit(0)
    return cfg

