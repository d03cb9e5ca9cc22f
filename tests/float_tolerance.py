"""How far apart two float32 results may be when they were computed along different paths.

The suite must pass on any x86-64 machine and thread count.  BLAS and deep-learning kernels
(AVX2 or AVX-512 builds of MKL, oneDNN, OpenBLAS, onnxruntime's MLAS, FAISS) and the number of
threads change the *order* in which float32 sums are added, never the mathematical result.
Rounding then differs by up to Higham's bound for recursive summation (Accuracy and Stability
of Numerical Algorithms, 2002, eq. 3.5): |error| <= gamma_n * sum_i |x_i|, gamma_n ~ n * u with
u = eps / 2; the difference of two such results is therefore at most n * eps * sum_i |x_i|.

So a tolerance is ``terms * eps32 * scale``: ``terms`` is the length of the longest sum behind
one number (a model's hidden size, a vector's dimension), ``scale`` the magnitude of what is
compared (by default the largest absolute expected value).  For a 384-dim model that is
~4.6e-5 relative to the largest value: 20-40x above what AVX2 and AVX-512 kernels or 1 and 2
threads differ by (measured), and still orders of magnitude below any real mistake (a wrong
pooling, a missing mask, a lost gradient term or a factor of 2).
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7


def float32_tolerance(*, scale: float, terms: int) -> float:
    """``terms * eps32 * scale``: rounding noise two summation orders can explain (see above)."""
    return float(terms) * EPS32 * float(scale)


def assert_close_float32(
    actual: object, expected: object, *, terms: int, scale: float | None = None, what: str = ""
) -> None:
    """max |actual - expected| <= terms * eps32 * scale, scale defaulting to max |expected|."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale = float(np.abs(e).max(initial=0.0)) if scale is None else scale
    tolerance = float32_tolerance(scale=scale, terms=terms)
    difference = float(np.abs(a - e).max(initial=0.0))
    assert difference <= tolerance, (
        f"{what}: max |difference| {difference:.3g} > {tolerance:.3g} (= {terms} x float32 eps x scale {scale:.3g})"
    )


def assert_same_ranking(found: np.ndarray, reference_scores: np.ndarray, *, tolerance: float) -> None:
    """``found`` (queries x k indices) is a best-first top k of ``reference_scores`` (float64,
    queries x documents) up to ``tolerance``: documents whose scores differ by less than float
    noise may trade places (another kernel may order them either way), any other swap, a
    missing document or a wrong one fails.  Checked as: the reference scores of the found
    documents equal the k best reference scores, position by position, within ``tolerance``."""
    found = np.asarray(found)
    best = -np.sort(-reference_scores, axis=1)[:, : found.shape[1]]
    got = np.take_along_axis(reference_scores, found, axis=1)
    assert np.all(np.abs(got - best) <= tolerance), np.abs(got - best).max()
    assert all(len(set(row)) == len(row) for row in found.tolist())  # no document twice
