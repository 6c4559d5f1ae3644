"""Test-wide settings and fixtures.

The models here are tiny, and on a 2-core machine torch's intra-op threads only contend with
each other (a 64-32-10 MLP step goes from 0.5 ms to 40 ms when another process holds a
core), so the suite runs torch single-threaded."""

import pytest
import torch
from sklearn.datasets import load_digits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """300 of scikit-learn's digits (pixels in [0, 1]) and a float64 64-32-10 tanh MLP."""
    X, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    ).double()
    return torch.tensor(X[:300] / 16.0), torch.tensor(y[:300]), model
