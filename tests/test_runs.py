"""Run plumbing: atomic writes, JSON conversion, criteria, resumable checkpoints, seeding."""

import json
import os
from unittest import mock

import numpy as np
import pytest
import torch

from common.runs import (atomic_write_bytes, criterion, format_criteria_table, load_checkpoint_if_matches,
                         save_checkpoint, seed_everything, to_jsonable, write_json)


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


def test_seed_everything_is_deterministic():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(2))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
