"""The array vocabulary's linear algebra (``odeopt.arrays``) on numpy and torch: the per-row
solve of the implicit schemes, with its pseudo-inverse fallback, and the constructors that take
dtype (and device) from a reference array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odeopt.arrays import NUMPY, arrays, arrays_of


def _systems() -> tuple[np.ndarray, np.ndarray]:
    """Six 3 × 3 systems: row 2 singular (rank 2), row 4 with a NaN entry."""
    g = np.random.default_rng(1)
    A, b = g.normal(size=(6, 3, 3)), g.normal(size=(6, 3))
    A[2] = [[1, 2, 3], [2, 4, 6], [0, 0, 1]]
    A[4, 0, 0] = np.nan
    return A, b


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_solve_is_per_row_and_falls_back_to_the_pseudo_inverse(library: str) -> None:
    A, b = _systems()
    regular = [0, 1, 3, 5]
    a = arrays(library)
    wrap = torch.as_tensor if library == "torch" else np.asarray
    # all rows regular: A x = b per row
    x = a.to_numpy(a.solve(wrap(A[regular]), wrap(b[regular])))
    np.testing.assert_allclose(np.einsum("rij,rj->ri", A[regular], x), b[regular], atol=1e-12)
    # a singular row: the minimum-norm least-squares solution there (and on every row),
    # NaN on the row with a non-finite entry
    x = a.to_numpy(a.solve(wrap(A), wrap(b)))
    np.testing.assert_allclose(x[2], np.linalg.pinv(A[2]) @ b[2], atol=1e-12)
    np.testing.assert_allclose(
        x[regular], np.linalg.solve(A[regular], b[regular][..., None])[..., 0]
    )
    assert np.isnan(x[4]).all()


def test_torch_solve_on_cpu_is_numpys_bit_for_bit() -> None:
    """Small CPU systems go through numpy (torch's batched solve costs ~100× more there)."""
    A, b = _systems()
    for dtype in (np.float64, np.float32):
        expect = NUMPY.solve(A.astype(dtype), b.astype(dtype))
        got = arrays("torch").solve(
            torch.as_tensor(A.astype(dtype)), torch.as_tensor(b.astype(dtype))
        )
        assert isinstance(got, torch.Tensor) and got.dtype == torch.as_tensor(expect).dtype
        np.testing.assert_array_equal(got.numpy(), expect)


@pytest.mark.parametrize(
    "ref", [np.ones(2, np.float32), np.ones(2), torch.ones(2, dtype=torch.float32), torch.ones(2)]
)
def test_constructors_follow_the_reference_dtype(ref: object) -> None:
    a = arrays_of(ref)
    ref_dtype = ref.dtype  # type: ignore[attr-defined]
    z, eye = a.zeros((2, 3), ref), a.eye(3, ref)
    assert z.dtype == ref_dtype and tuple(z.shape) == (2, 3) and not a.to_numpy(z).any()
    assert eye.dtype == ref_dtype
    np.testing.assert_array_equal(a.to_numpy(eye), np.eye(3))
    single = ref_dtype in (np.float32, torch.float32)
    assert a.eps(ref) == (2.0**-23 if single else 2.0**-52)
    m = a.zeros(4, ref)
    assert tuple(m.shape) == (4,) and m.dtype == ref_dtype
    x = a.concatenate([a.zeros((4, 2), ref), m[:, None] + 1], -1)
    assert tuple(a.permute(x[None], (1, 2, 0)).shape) == (4, 3, 1)
