"""The certified Jacobi solver (tmn._core.jacobi_solve) against scipy.

Every system here is a random sparse symmetric strictly diagonally dominant
matrix (so SPD, and Gershgorin's bound is a valid lambda_min lower bound).
The reference is scipy.sparse.linalg.spsolve refined with extended-precision
residuals, far more accurate than any bound it checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tmn import _core

SLACK = 1.0 + 1e-12


def random_sdd(rng: np.random.Generator, n: int, per_row: float, margin: float,
               scale: float = 1.0, band: int | None = None) -> sp.csr_matrix:
    """Symmetric, strictly diagonally dominant, positive diagonal; sorted CSR.

    ``band`` keeps the random couplings within that distance of the diagonal
    (the reference LU then stays sparse for large n)."""
    m = int(per_row * n / 2)
    i = rng.integers(0, n, size=m)
    if band is None:
        j = rng.integers(0, n, size=m)
    else:
        j = np.clip(i + rng.integers(-band, band + 1, size=m), 0, n - 1)
    keep = i != j
    i, j = i[keep], j[keep]
    vals = rng.standard_normal(i.size) * scale
    S = sp.coo_matrix((np.r_[vals, vals], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    S.sum_duplicates()
    off = np.asarray(abs(S).sum(axis=1)).ravel()
    diag = off * (1.0 + margin) + scale * rng.uniform(0.01, 1.0, size=n)
    A = (S + sp.diags(diag)).tocsr()
    A.sum_duplicates()
    A.sort_indices()
    return A


def csr_args(A: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data.astype(np.float64))


def matvec_long(A: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """A @ x with every product and sum in extended precision."""
    prod = A.data.astype(np.longdouble) * np.asarray(x, dtype=np.longdouble)[A.indices]
    return np.add.reduceat(prod, A.indptr[:-1])  # every row holds its diagonal


def accurate_solve(A: sp.csr_matrix, b: np.ndarray) -> np.ndarray:
    csc = A.tocsc()
    x = spla.spsolve(csc, b).astype(np.longdouble)
    for _ in range(2):
        r = b.astype(np.longdouble) - matvec_long(A, x)
        x = x + spla.spsolve(csc, r.astype(np.float64)).astype(np.longdouble)
    return x


def gershgorin(A: sp.csr_matrix) -> float:
    d = A.diagonal()
    return float(np.min(d - (np.asarray(abs(A).sum(axis=1)).ravel() - np.abs(d))))


def solve(A: sp.csr_matrix, b: np.ndarray, x0: np.ndarray, eps: float, budget: int,
          lambda_lb: float | None = None) -> tuple[np.ndarray, dict]:
    return _core.jacobi_solve(*csr_args(A), b, x0, eps, budget, lambda_lb)


def check_certificate(A: sp.csr_matrix, b: np.ndarray, x0: np.ndarray, x: np.ndarray,
                      c: dict, eps: float, budget: int, lam_lb: float, where: str) -> None:
    nnz = A.nnz
    assert c["work"] <= budget, where
    assert c["work"] % nnz == 0, where
    if c["work"] > 0:  # one residual per pass, one update between passes
        assert c["work"] == (c["iterations"] + 1) * nnz, where
    assert c["certified"] == (c["error_bound"] <= eps), where
    if c["certified"]:
        assert c["error_bound"] <= eps, where
    if math.isfinite(c["error_bound"]):
        x_ref = accurate_solve(A, b)
        err = float(np.sqrt(np.sum((x.astype(np.longdouble) - x_ref) ** 2)))
        assert err <= c["error_bound"] * SLACK, f"{where}: error {err!r} > {c['error_bound']!r}"
        # the bound covers the exact residual of the returned x, too
        resid = float(np.sqrt(np.sum((b.astype(np.longdouble) - matvec_long(A, x)) ** 2)))
        assert resid <= c["error_bound"] * lam_lb * SLACK, where
        assert c["residual_norm"] <= c["error_bound"] * lam_lb * SLACK, where
    else:
        assert not c["certified"], where
        np.testing.assert_array_equal(x, x0)


# --------------------------------------------------------------------------
# certificates on random systems
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 10, 57, 300, 1000, 3000])
def test_random_sdd_systems_get_a_bound_on_the_true_error(n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    certified = 0
    for trial in range(16):
        A = random_sdd(rng, n, per_row=float(rng.uniform(1, 12)),
                       margin=float(10.0 ** rng.uniform(-2, 0.5)),
                       scale=float(10.0 ** rng.uniform(-3, 4)),
                       band=None if n <= 300 else int(rng.integers(1, 40)))
        x_true = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 3)
        b = A @ x_true
        x0 = np.zeros(n) if trial % 2 else rng.standard_normal(n)
        eps = float(np.linalg.norm(x_true) * 10.0 ** rng.uniform(-11, -1)) + 1e-300
        budget = int(A.nnz * rng.choice([1, 3, 20, 200, 5000]))
        x, c = solve(A, b, x0, eps, budget)
        where = f"n={n} trial={trial} eps={eps!r} budget={budget}"
        check_certificate(A, b, x0, x, c, eps, budget, gershgorin(A), where)
        certified += c["certified"]
    assert certified >= 2  # the certified branch is exercised at every size


def test_budget_decides_certification_exactly_at_the_work_it_needs() -> None:
    # The iterates do not depend on the budget, so the smallest budget that
    # certifies is the work an unlimited run spends, and one less fails.
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(5, 400))
        A = random_sdd(rng, n, per_row=6, margin=0.2)
        b = rng.standard_normal(n)
        x0 = np.zeros(n)
        x_inf, c_inf = solve(A, b, x0, 1e-8, 10**9)
        assert c_inf["certified"]
        x_at, c_at = solve(A, b, x0, 1e-8, c_inf["work"])
        assert c_at["certified"] and c_at["work"] == c_inf["work"]
        np.testing.assert_array_equal(x_at, x_inf)
        x_short, c_short = solve(A, b, x0, 1e-8, c_inf["work"] - 1)
        assert not c_short["certified"] and c_short["work"] < c_inf["work"]
        check_certificate(A, b, x0, x_short, c_short, 1e-8, c_inf["work"] - 1, gershgorin(A),
                          f"n={n}")


def test_a_tighter_lambda_lower_bound_gives_a_valid_tighter_certificate() -> None:
    rng = np.random.default_rng(9)
    for _ in range(10):
        n = int(rng.integers(2, 200))
        A = random_sdd(rng, n, per_row=8, margin=0.05)
        lam_min = float(np.linalg.eigvalsh(A.toarray())[0])
        lam_lb = max(lam_min * (1.0 - 1e-9), gershgorin(A))  # both <= lambda_min
        b = rng.standard_normal(n)
        x0 = np.zeros(n)
        budget = 30 * A.nnz
        x_g, c_g = solve(A, b, x0, 1e-300, budget)  # unreachable eps: both run to the end
        x_e, c_e = solve(A, b, x0, 1e-300, budget, lambda_lb=lam_lb)
        np.testing.assert_array_equal(x_g, x_e)
        assert c_e["error_bound"] <= c_g["error_bound"]
        check_certificate(A, b, x0, x_e, c_e, 1e-300, budget, lam_lb, f"n={n}")


def test_starting_at_the_exact_solution_certifies_on_the_first_residual() -> None:
    A = sp.csr_matrix(np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 4.0]]))
    x_true = np.array([1.0, -2.0, 0.5])
    b = A @ x_true  # exact in binary
    x, c = solve(A, b, x_true.copy(), 1e-12, 1000)
    assert c["certified"] and c["work"] == A.nnz and c["iterations"] == 0
    assert c["residual_norm"] == 0.0 and 0.0 < c["error_bound"] <= 1e-12
    np.testing.assert_array_equal(x, x_true)


# --------------------------------------------------------------------------
# refusals to certify
# --------------------------------------------------------------------------

@pytest.mark.parametrize("budget_of_nnz", [0.0, 0.5, 0.999])
def test_budget_smaller_than_nnz_is_uncertified_with_an_infinite_bound(
        budget_of_nnz: float) -> None:
    rng = np.random.default_rng(2)
    A = random_sdd(rng, 50, per_row=5, margin=0.5)
    b, x0 = rng.standard_normal(50), rng.standard_normal(50)
    budget = int(A.nnz * budget_of_nnz)
    assert budget < A.nnz
    x, c = solve(A, b, x0, 1e3, budget)
    assert not c["certified"] and c["error_bound"] == math.inf
    assert c["work"] == 0 and c["iterations"] == 0
    np.testing.assert_array_equal(x, x0)


def not_diagonally_dominant_spd(rng: np.random.Generator, n: int) -> sp.csr_matrix:
    M = rng.standard_normal((n, n))
    A = M @ M.T + 0.1 * np.eye(n)  # SPD, dense, rows far from dominant
    return sp.csr_matrix(A)


@pytest.mark.parametrize("n", [2, 5, 40])
def test_matrix_that_is_not_diagonally_dominant_is_never_certified_by_default(n: int) -> None:
    rng = np.random.default_rng(n)
    A = not_diagonally_dominant_spd(rng, n)
    assert gershgorin(A) < 0
    x_true = rng.standard_normal(n)
    b = A @ x_true
    # even the exact answer as the start and a huge eps certify nothing
    for x0 in (x_true.copy(), np.zeros(n)):
        x, c = solve(A, b, x0, 1e30, 10**6)
        assert not c["certified"] and c["error_bound"] == math.inf and c["work"] == 0
        np.testing.assert_array_equal(x, x0)


def test_weakly_dominant_matrix_has_no_gershgorin_bound_and_is_not_certified() -> None:
    A = sp.csr_matrix(np.array([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 3.0]]))
    assert gershgorin(A) == 0.0
    x, c = solve(A, np.ones(3), np.zeros(3), 1e30, 10**6)
    assert not c["certified"] and c["error_bound"] == math.inf


@pytest.mark.parametrize("lambda_lb", [0.0, -1.0, math.nan])
def test_non_positive_lambda_lower_bound_is_never_certified(lambda_lb: float) -> None:
    rng = np.random.default_rng(4)
    A = random_sdd(rng, 20, per_row=4, margin=1.0)
    x, c = solve(A, rng.standard_normal(20), np.zeros(20), 1e30, 10**6, lambda_lb=lambda_lb)
    assert not c["certified"] and c["error_bound"] == math.inf and c["work"] == 0


def test_non_finite_right_hand_side_is_never_certified() -> None:
    rng = np.random.default_rng(6)
    A = random_sdd(rng, 20, per_row=4, margin=1.0)
    for bad in (math.nan, math.inf):
        b = rng.standard_normal(20)
        b[3] = bad
        x, c = solve(A, b, np.zeros(20), 1e30, 50 * A.nnz)
        assert not c["certified"] and not c["error_bound"] <= 1e30
        assert c["work"] <= 50 * A.nnz


# --------------------------------------------------------------------------
# invalid CSR
# --------------------------------------------------------------------------

def small_valid() -> tuple[list[int], list[int], list[float]]:
    # [[4, 1, 0], [1, 4, 1], [0, 1, 4]]
    return [0, 2, 5, 7], [0, 1, 0, 1, 2, 1, 2], [4.0, 1.0, 1.0, 4.0, 1.0, 1.0, 4.0]


def call(indptr: list[int], indices: list[int], data: list[float], n: int = 3,
         x0_len: int | None = None, index_dtype: type = np.int32) -> tuple:
    return _core.jacobi_solve(np.array(indptr, np.int32), np.array(indices, index_dtype),
                              np.array(data, np.float64), np.ones(n),
                              np.zeros(n if x0_len is None else x0_len), 1e-6, 10_000)


def test_small_valid_csr_is_accepted_and_solved() -> None:
    x, c = call(*small_valid())
    assert c["certified"]
    A = sp.csr_matrix(np.array([[4.0, 1, 0], [1, 4, 1], [0, 1, 4]]))
    np.testing.assert_allclose(x, spla.spsolve(A.tocsc(), np.ones(3)), atol=1e-6)


def variant(change: str) -> tuple:
    indptr, indices, data = small_valid()
    if change == "unsorted columns":
        indices[2], indices[3] = indices[3], indices[2]
        data[2], data[3] = data[3], data[2]
    elif change == "duplicate column":
        indices[3] = 0
    elif change == "column index n":
        indices[6] = 3
    elif change == "negative column index":
        indices[0] = -1
    elif change == "missing diagonal":  # row 2 without its diagonal
        indptr, indices, data = [0, 2, 5, 6], indices[:6], data[:6]
    elif change == "indptr too short":
        indptr = indptr[:-1]
    elif change == "indptr too long":
        indptr = indptr + [7]
    elif change == "indptr not starting at zero":
        indptr = [1, 2, 5, 7]
    elif change == "indptr decreasing":
        indptr = [0, 5, 2, 7]
    elif change == "indptr end disagrees with indices":
        indptr = [0, 2, 5, 6]
    elif change == "data shorter than indices":
        data = data[:-1]
    elif change == "NaN value":
        data[1] = math.nan
    elif change == "infinite value":
        data[4] = math.inf
    elif change == "NaN diagonal":
        data[0] = math.nan
    else:
        raise AssertionError(change)
    return indptr, indices, data


@pytest.mark.parametrize("change", [
    "unsorted columns", "duplicate column", "column index n", "negative column index",
    "missing diagonal", "indptr too short", "indptr too long", "indptr not starting at zero",
    "indptr decreasing", "indptr end disagrees with indices", "data shorter than indices",
    "NaN value", "infinite value", "NaN diagonal",
])
def test_invalid_csr_is_refused_with_value_error(change: str) -> None:
    with pytest.raises(ValueError):
        call(*variant(change))


@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_explicitly_stored_zero_diagonal_is_refused_like_a_missing_one(zero: float) -> None:
    # solver.hpp: "validated: sorted, in-range indices, nonzero diagonal"
    indptr, indices, data = small_valid()
    data[3] = zero  # a_11 stored, but zero
    with pytest.raises(ValueError):
        call(indptr, indices, data)


def test_column_index_that_does_not_fit_int32_is_refused_not_wrapped() -> None:
    # 2**32 + 1 wraps to column 1 if it is silently cast to int32
    indptr, indices, data = small_valid()
    indices = [int(i) for i in indices]
    indices[6] = 2**32 + 2  # row 2's diagonal, out of range
    with pytest.raises(ValueError):
        call(indptr, indices, data, index_dtype=np.int64)


def test_empty_system_and_wrong_x0_length_are_refused() -> None:
    with pytest.raises(ValueError):
        _core.jacobi_solve(np.array([0], np.int32), np.array([], np.int32), np.array([]),
                           np.array([]), np.array([]), 1e-6, 100)
    with pytest.raises(ValueError):
        call(*small_valid(), x0_len=2)
