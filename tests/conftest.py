"""Shared test settings: one torch thread (fastest on the 2-core CI machine), float32 default."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    torch.set_num_threads(1)
    yield
