"""Test-wide settings: fp32, deterministic algorithms, fixed thread count."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.use_deterministic_algorithms(True)
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
