"""Where a run writes, and the checks that it may write there.

A run's output folder is `--out-dir`; else the experiment folder (the committed findings) for the
full default run, neither tagged nor a rerun; else `runs/<experiment>/<UTC time>-<config hash>[-<tag>]/`
(git-ignored), where a rerun of the same config resumes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from common.cli import read_json
from common.fields import ConfigError, config_hash, fields_with_role, identity, require, short

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_ROOT = REPO_ROOT / "runs"
OUTPUT_FOLDERS = ("checkpoints", "results", "plots", ".staging")  # what a run keeps in its output folder
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")  # what `--tag` may be: safe in a folder name, bounded

_RUN_FOLDERS: dict[str, Path] = {}  # hash -> folder chosen in this process (the name holds a time)


def run_folder(cfg) -> Path:
    """`runs/<experiment>/<UTC time>-<hash>[-<tag>]/`: the newest existing folder of this config's hash
    and tag (so a rerun resumes there), else a new name."""
    name = config_hash(cfg) + (f"-{cfg.tag}" if cfg.tag else "")
    key = f"{cfg.experiment_folder}/{name}"
    if key not in _RUN_FOLDERS:
        parent = RUNS_ROOT / cfg.experiment_folder
        existing = sorted(parent.glob(f"*-{name}")) if parent.is_dir() else []
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        _RUN_FOLDERS[key] = existing[-1] if existing else parent / f"{stamp}-{name}"
    return _RUN_FOLDERS[key]


def writes_findings(cfg) -> bool:
    """Without `--out-dir`, this run writes the committed findings: the full default run, neither
    tagged nor a rerun of a saved config."""
    return cfg.is_full_default() and not cfg.tag and not cfg.config


def output_dir(cfg) -> Path:
    """`--out-dir`; else the experiment folder (committed findings) when `writes_findings`,
    else this config's folder under runs/ (git-ignored)."""
    if cfg.out_dir:
        return Path(cfg.out_dir)
    return REPO_ROOT / cfg.experiment_folder if writes_findings(cfg) else run_folder(cfg)


def with_saved_fields(cfg):
    """`cfg` with every number-changing field (roles model, eval) taken from the run saved in its
    output folder (`results/config.json`): what `--plots-only` draws with."""
    saved = read_json(output_dir(cfg) / "results" / "config.json")
    names = set(fields_with_role(cfg, "model", "eval")) & set(saved)
    return dataclasses.replace(cfg, **{name: saved[name] for name in names})


def check_output_dir(cfg) -> None:
    """ConfigError unless the run may write to its output folder: writable, nothing in the way of its
    files, not the run a `--config` rerun comes from, and no other config's results in it (with
    `--plots-only`: the saved results it redraws are there)."""
    out = output_dir(cfg)
    _require_writable(out)
    require(not cfg.config or out.resolve() != Path(cfg.config).resolve().parent.parent,
            f"--config {short(cfg.config)}: the output folder {short(out)} is the run it comes from, and a "
            "rerun never overwrites it; add --tag NAME or --out-dir DIR")
    _require_layout(out, ("results/config.json", *cfg.saved_for_plots))
    if cfg.plots_only:
        missing = [name for name in cfg.saved_for_plots if not (out / name).is_file()]
        require(not missing, f"--plots-only: nothing saved for this config in {out} (missing "
                f"{', '.join(missing)}); run it without --plots-only first")
    else:
        _require_same_config(cfg, out)


def _require_writable(path: Path) -> None:
    """The folder exists and is writable, or can be created under a writable ancestor. The probe
    makes and removes one empty temporary folder, so pseudo file systems (/proc) are caught too."""
    try:  # resolving meets symlink loops (RuntimeError), a too-long name fails its first stat (OSError)
        probe = path.resolve()
        while not probe.exists():
            probe = probe.parent
        require(probe.is_dir(), f"out_dir {path} is not a folder ({probe} is a file)")
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".write-probe-"))
    except RuntimeError as err:
        raise ConfigError(f"out_dir {short(path)} cannot be resolved ({err})") from None
    except OSError as err:
        raise ConfigError(f"out_dir {short(path)} cannot be written ({err.strerror})") from None


def _require_layout(out: Path, files: tuple[str, ...]) -> None:
    """The output folder's own folders are folders and the files a run writes are not folders, so
    that no path in the way stops a run after its work."""
    for name in OUTPUT_FOLDERS:
        require(not (out / name).exists() or (out / name).is_dir(),
                f"out_dir {out}: {out / name} is a file where a run keeps its {name} folder; move it away "
                "or choose another --out-dir")
    for name in files:
        require(not (out / name).is_dir(), f"out_dir {out}: {out / name} is a folder where a run writes that "
                "file; move it away or choose another --out-dir")


def _require_same_config(cfg, out: Path) -> None:
    """A folder holding another config's results is never overwritten (the committed findings
    are refreshed only by the full default run). A field the saved config lacks was added later, with
    a default that does what the code did before: it counts as that default."""
    saved_path = out / "results" / "config.json"
    if not saved_path.is_file() or (cfg.is_full_default() and out == REPO_ROOT / cfg.experiment_folder):
        return
    saved = read_json(saved_path)
    new, defaults = identity(cfg, "model", "eval"), identity(type(cfg)(), "model", "eval")
    differ = sorted(k for k in new if not isinstance(saved, dict) or saved.get(k, defaults[k]) != new[k])
    require(not differ, f"out_dir {out} holds results of another config ({', '.join(differ[:4])} differ); "
            "choose another --out-dir or remove that folder")
