"""From a scheme to a discrete update rule, its recognition, and export to torch.optim."""

from .rule import Identification, UpdateRule, discretize

__all__ = ["Identification", "UpdateRule", "discretize"]
