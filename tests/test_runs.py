"""Run plumbing: atomic writes, JSON conversion, criteria, resumable checkpoints, seeding."""

import dataclasses
import json
import os
from datetime import datetime
from unittest import mock

import numpy as np
import pytest
import torch

from common.config import Exp2Config
from common.runs import (atomic_write_bytes, config_differences, criterion, format_criteria_table,
                         load_checkpoint_if_matches, load_or_train_batch, prepare_output_dir, read_json, save_checkpoint, seed_everything,
                         to_jsonable, write_json)


def test_interrupted_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"value": 1})

    def crash(*_args):
        raise KeyboardInterrupt  # the process is interrupted between writing and renaming

    with mock.patch("common.runs.os.replace", side_effect=crash), pytest.raises(KeyboardInterrupt):
        write_json(path, {"value": 2})
    assert json.loads(path.read_text()) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_creates_folders(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"xyz")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"xyz"


def test_to_jsonable_handles_numpy_torch_and_nan():
    obj = {"a": np.float32(1.5), "b": torch.tensor([1.0, float("nan")]), "c": (np.int64(2), np.bool_(True))}
    assert to_jsonable(obj) == {"a": 1.5, "b": [1.0, None], "c": [2, True]}


def test_criterion_fails_on_missing_or_nan():
    assert criterion("x", "> 1", 2.0, lambda m: m > 1).passed
    assert not criterion("x", "> 1", 0.5, lambda m: m > 1).passed
    assert not criterion("x", "< 1", float("nan"), lambda m: m < 1).passed
    assert not criterion("x", "< 1", None, lambda m: m < 1).passed
    table = format_criteria_table([criterion("x", "> 1", 2.0, lambda m: m > 1),
                                   criterion("y", "< 1", None, lambda m: m < 1)])
    assert "PASS" in table and "FAIL" in table and "n/a" in table


def test_checkpoint_resume_requires_matching_config(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"unit_config": to_jsonable({"lr": 0.1, "seed": 0}), "state": torch.ones(2)})
    assert load_checkpoint_if_matches(path, {"lr": 0.1, "seed": 0})["state"].sum() == 2
    assert load_checkpoint_if_matches(path, {"lr": 0.2, "seed": 0}) is None
    assert load_checkpoint_if_matches(tmp_path / "missing.pt", {"lr": 0.1}) is None


def test_batch_resume_loads_all_or_retrains_all_and_writes_only_missing_files(tmp_path):
    paths, units = [tmp_path / "a.pt", tmp_path / "b.pt"], [{"m": 0}, {"m": 1}]
    calls = []

    def train():
        calls.append(1)
        return [{"value": 10 * len(calls)}, {"value": 10 * len(calls) + 1}]

    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 11]
    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 11] and len(calls) == 1
    paths[1].unlink()
    mtime = paths[0].stat().st_mtime_ns
    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 21] and len(calls) == 2
    assert paths[0].stat().st_mtime_ns == mtime and load_checkpoint_if_matches(paths[1], units[1])["value"] == 21


def test_seed_everything_is_deterministic():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(2))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ----------------------------------------------------------------------------------------------
# output policy: prepare_output_dir


def _saved_run(cfg, tmp_path):
    """Pretend `cfg` ran into tmp_path: its config.json, a metrics file, a plot and a checkpoint."""
    write_json(tmp_path / "results" / "config.json", dataclasses.asdict(cfg))
    write_json(tmp_path / "results" / "metrics.json", {"value": 1})
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    save_checkpoint(tmp_path / "checkpoints" / "unit.pt", {"unit_config": {}})


def test_prepare_output_dir_without_saved_results_moves_nothing(tmp_path, capsys):
    assert prepare_output_dir(Exp2Config(out_dir=str(tmp_path / "fresh"))) is None
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "results").mkdir()  # a folder without config.json (e.g. only a sweep's file)
    write_json(tmp_path / "results" / "sweep.json", {})
    assert prepare_output_dir(Exp2Config(out_dir=str(tmp_path), lr=0.5)) is None
    assert (tmp_path / "results" / "sweep.json").exists() and capsys.readouterr().out == ""


def test_prepare_output_dir_same_config_resumes_in_place(tmp_path, capsys):
    _saved_run(Exp2Config(out_dir=str(tmp_path)), tmp_path)
    # presentation fields differ (and out_dir spelled differently): still the same run
    same = Exp2Config(out_dir=str(tmp_path) + "/", quiet=True, strict=True, num_threads=2, device="cpu")
    assert prepare_output_dir(same) is None
    assert (tmp_path / "results" / "metrics.json").exists() and (tmp_path / "plots" / "a.png").exists()
    assert not (tmp_path / "previous").exists() and capsys.readouterr().out == ""


def test_prepare_output_dir_moves_a_different_configs_results_aside(tmp_path, capsys):
    old = Exp2Config(out_dir=str(tmp_path))
    _saved_run(old, tmp_path)
    dest = prepare_output_dir(Exp2Config(out_dir=str(tmp_path), lr=0.5, seeds=[7]))
    assert dest.parent == tmp_path / "previous"
    assert datetime.strptime(dest.name, "%Y%m%dT%H%M%SZ")  # a UTC timestamp
    assert read_json(dest / "results" / "config.json") == to_jsonable(dataclasses.asdict(old))
    assert read_json(dest / "results" / "metrics.json") == {"value": 1}
    assert (dest / "plots" / "a.png").read_bytes() == b"png"
    assert not (tmp_path / "results").exists() and not (tmp_path / "plots").exists()
    assert (tmp_path / "checkpoints" / "unit.pt").exists()  # checkpoints carry their own config: they stay
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "lr, seeds" in lines[0] and str(dest) in lines[0]


def test_prepare_output_dir_never_reuses_a_previous_folder(tmp_path):
    _saved_run(Exp2Config(out_dir=str(tmp_path)), tmp_path)
    first = prepare_output_dir(Exp2Config(out_dir=str(tmp_path), lr=0.5))
    write_json(tmp_path / "results" / "config.json", dataclasses.asdict(Exp2Config(out_dir=str(tmp_path), lr=0.5)))
    second = prepare_output_dir(Exp2Config(out_dir=str(tmp_path), lr=0.25))  # most likely within the same second
    assert first != second and (first / "results").exists() and (second / "results").exists()


def test_prepare_output_dir_moves_an_unreadable_config_aside(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "config.json").write_text("{truncated")
    dest = prepare_output_dir(Exp2Config(out_dir=str(tmp_path)))
    assert (dest / "results" / "config.json").read_text() == "{truncated"


def test_config_differences_ignores_presentation_fields_only():
    saved = {"lr": 0.1, "seeds": [0, 1], "quiet": False, "device": "auto", "gone": 1}
    new = {"lr": 0.1, "seeds": (0, 1), "quiet": True, "device": "cpu", "added": 2}
    assert config_differences(saved, new) == ["added", "gone"]
    assert config_differences(saved, {**saved, "lr": np.float64(0.2)}) == ["lr"]
