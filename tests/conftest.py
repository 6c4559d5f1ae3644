"""Test-wide settings: the models here are tiny, and on a 2-core machine torch's intra-op
threads only contend with each other (a 64-32-10 MLP step goes from 0.5 ms to 40 ms when
another process holds a core), so the suite runs torch single-threaded."""

import torch

torch.set_num_threads(1)
