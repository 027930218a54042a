"""The certified gate (tmn._core.SolverGate) against an independent numpy reference.

The reference is built from the maths in gate.hpp / docs/gate.md only:

    A = I + lam D^T D,  D the K x K lower-triangular second difference with
                        rows (..., 1, -2, 1) ending on the diagonal,
    b = q + lam v[axis] dh e_0 per axis,  q = prior + delta,
    d2 = mean_k (dx_k^2 ivx_k + dy_k^2 ivy_k),

with (x, y) interleaved per horizon. The reference solution is numpy's dense
solve, refined with residuals in extended precision (np.longdouble) so that
the reference itself is far more accurate than any bound it checks; a subset
of adversarial instances is checked in exact rational arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import sparse as scipy_sparse

import tmn
from tmn import _core

PASS = tmn.Verdict.pass_
IMPLAUSIBLE = tmn.Verdict.fallback_implausible
UNCERTIFIED = tmn.Verdict.fallback_uncertified

# Every solver kernel this build and CPU have (gate.hpp, 4.): the fixed-size
# kernels are compiled per ISA, so each one is checked.
ISAS = [
    pytest.param(isa, id=isa.name,
                 marks=pytest.mark.skipif(not _core.isa_available(isa),
                                          reason=f"{isa.name} not available on this CPU/build"))
    for isa in (_core.Isa.scalar, _core.Isa.avx2, _core.Isa.avx512)
]
MAX_FIXED_K = 16  # gate.hpp: kGateMaxRegs registers of four doubles hold 2K unknowns

# Comparisons of computed norms against bounds get this much rounding slack.
SLACK = 1.0 + 1e-12
UNLIMITED = 10**8  # a budget no instance here can exhaust before certifying


# --------------------------------------------------------------------------
# independent reference
# --------------------------------------------------------------------------

def second_difference(K: int) -> np.ndarray:
    """Rows (1, -2, 1) ending on the diagonal; row 0 is e_0, row 1 is (-2, 1)."""
    D = np.zeros((K, K))
    for i in range(K):
        D[i, i] = 1.0
        if i >= 1:
            D[i, i - 1] = -2.0
        if i >= 2:
            D[i, i - 2] = 1.0
    return D


def reference_matrix(K: int, lam: float) -> np.ndarray:
    D = second_difference(K)
    return np.eye(K) + lam * (D.T @ D)


def reference_rhs(delta: np.ndarray, prior: np.ndarray, v: np.ndarray, lam: float,
                  dh: float) -> np.ndarray:
    """b[:, axis] = q + lam v[axis] dh e_0, q = prior + delta, shape (K, 2)."""
    q = (prior + delta.astype(np.float64)).reshape(-1, 2)
    b = q.copy()
    for axis in range(2):
        b[0, axis] += lam * v[axis] * dh
    return b


def reference_d2(delta: np.ndarray, inv_var: np.ndarray) -> float:
    d = delta.astype(np.float64).reshape(-1, 2)
    iv = inv_var.reshape(-1, 2)
    return float(np.mean(d[:, 0] ** 2 * iv[:, 0] + d[:, 1] ** 2 * iv[:, 1]))


def accurate_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy.linalg.solve plus two steps of refinement with extended-precision residuals."""
    x = np.linalg.solve(A, b).astype(np.longdouble)
    A_l, b_l = A.astype(np.longdouble), b.astype(np.longdouble)
    for _ in range(2):
        r = b_l - A_l @ x
        x = x + np.linalg.solve(A, r.astype(np.float64)).astype(np.longdouble)
    return x


def exact_solve(K: int, lam: float, b: list[Fraction]) -> list[Fraction]:
    """The exact solution of (I + lam D^T D) u = b for the given double lam, banded Gauss."""
    D = second_difference(K)
    DtD = (D.T @ D).astype(int)  # small integers, exact
    lam_f = Fraction(lam)
    A = [[(Fraction(1) if i == j else Fraction(0)) + lam_f * int(DtD[i, j]) for j in range(K)]
         for i in range(K)]
    b = list(b)
    for i in range(K):  # SPD: no pivoting needed; bandwidth 2 keeps this cheap
        for r in range(i + 1, min(i + 3, K)):
            f = A[r][i] / A[i][i]
            if f:
                for c in range(i, min(i + 3, K)):
                    A[r][c] -= f * A[i][c]
                b[r] -= f * b[i]
    u = [Fraction(0)] * K
    for i in reversed(range(K)):
        s = b[i] - sum((A[i][c] * u[c] for c in range(i + 1, min(i + 3, K))), Fraction(0))
        u[i] = s / A[i][i]
    return u


def solved_matrix(K: int, lam: float) -> np.ndarray:
    """What the gate solves: both axes at once, A (x) I_2 in (x_0, y_0, x_1, ...) order."""
    return np.kron(reference_matrix(K, lam), np.eye(2))


def nnz(K: int) -> int:
    """Touched nonzeros per residual pass over both axes."""
    return int(np.count_nonzero(solved_matrix(K, 0.1)))


def make_gate(K: int, lam: float, eps: float = 0.02, budget: int = 200_000,
              threshold: float = 1e300, dh: float = 0.05,
              isa: _core.Isa | None = None) -> _core.SolverGate:
    return _core.SolverGate(_core.GateParams(eps, budget, lam, threshold), horizons=K, dh=dh,
                            isa=isa)


# --------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 10, 31, 32])
@pytest.mark.parametrize("lam", [1e-9, 0.01, 0.1, 0.2, 0.2499999])
def test_matrix_is_identity_plus_lambda_times_dtd_of_the_second_difference(
        K: int, lam: float) -> None:
    A = make_gate(K, lam).matrix()
    ref = solved_matrix(K, lam)
    # the same two roundings (lam * integer, then + 1) give the same doubles
    np.testing.assert_array_equal(A, ref)
    assert np.array_equal(A, A.T)
    off = np.abs(A).sum(axis=1) - np.abs(np.diag(A))
    assert (np.diag(A) > off).all(), "A must be strictly diagonally dominant for lam < 1/4"
    assert np.count_nonzero(A) == 2 * (5 * K - 6 if K >= 2 else 1)


@pytest.mark.parametrize("eps,budget,lam,threshold", [
    (0.02, 1000, 0.0, 1.0),
    (0.02, 1000, -0.1, 1.0),
    (0.02, 1000, 0.25, 1.0),
    (0.02, 1000, 0.3, 1.0),
    (0.02, 1000, math.nan, 1.0),
    (0.0, 1000, 0.1, 1.0),
    (-1e-3, 1000, 0.1, 1.0),
    (math.nan, 1000, 0.1, 1.0),
    (math.inf, 1000, 0.1, 1.0),
    (0.02, 1000, 0.1, 0.0),
    (0.02, 1000, 0.1, -1.0),
    (0.02, 1000, 0.1, math.nan),
])
def test_constructor_rejects_parameters_outside_the_contract(
        eps: float, budget: int, lam: float, threshold: float) -> None:
    with pytest.raises(ValueError):
        _core.SolverGate(_core.GateParams(eps, budget, lam, threshold), horizons=8, dh=0.05)


@pytest.mark.parametrize("K,dh", [(0, 0.05), (-1, 0.05), (8, 0.0), (8, -0.05), (8, math.nan),
                                  (8, math.inf)])
def test_constructor_rejects_no_horizons_or_a_bad_spacing(K: int, dh: float) -> None:
    with pytest.raises(ValueError):
        _core.SolverGate(_core.GateParams(0.02, 1000, 0.1, 1.0), horizons=K, dh=dh)


def test_constructor_accepts_lambda_just_inside_the_open_interval() -> None:
    for lam in (5e-324, math.nextafter(0.25, 0.0)):
        A = make_gate(6, lam).matrix()
        assert A.shape == (12, 12)  # both axes: A (x) I_2


def test_run_rejects_arrays_of_the_wrong_length() -> None:
    g = make_gate(4, 0.1)
    ok = dict(delta=np.zeros(8, np.float32), prior=np.zeros(8), inv_var=np.ones(8),
              v=np.zeros(2))
    assert g.run(**ok)["verdict"] == PASS
    for name, bad in [("delta", np.zeros(7, np.float32)), ("prior", np.zeros(9)),
                      ("inv_var", np.ones((4, 2))), ("v", np.zeros(3))]:
        with pytest.raises(ValueError, match=name):
            g.run(**{**ok, name: bad})


def test_verdict_enum_values_are_stable() -> None:
    assert [int(v.value) for v in (tmn.Verdict.pass_, tmn.Verdict.fallback_implausible,
                                   tmn.Verdict.fallback_uncertified, tmn.Verdict.warming,
                                   tmn.Verdict.ungated)] == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------
# random instances
# --------------------------------------------------------------------------

def random_instance(rng: np.random.Generator) -> dict:
    K = int(rng.integers(1, 33))
    kind = rng.random()
    if kind < 0.7:
        lam = float(rng.uniform(1e-6, 0.25))
    elif kind < 0.85:
        lam = 0.25 * (1.0 - 10.0 ** rng.uniform(-7, -1))  # close to the dominance limit
    else:
        lam = 10.0 ** rng.uniform(-9, -2)  # almost no smoothing
    lam = min(max(lam, 1e-12), math.nextafter(0.25, 0.0))
    eps = 10.0 ** rng.uniform(-7, 0.5)
    m_delta, m_prior, m_v = 10.0 ** rng.uniform(-3, 3, size=3)
    delta = (rng.standard_normal(2 * K) * m_delta).astype(np.float32)
    prior = rng.standard_normal(2 * K) * m_prior
    inv_var = 10.0 ** rng.uniform(-4, 4, size=2 * K)
    v = rng.standard_normal(2) * m_v
    dh = 10.0 ** rng.uniform(-3, 0)
    n = nnz(K)
    b = rng.random()
    if b < 0.5:
        budget = 200_000
    elif b < 0.6:
        budget = int(rng.integers(0, n))  # cannot even compute one residual
    elif b < 0.85:
        budget = int(rng.integers(n, 40 * n))
    else:
        budget = int(rng.integers(n, 400 * n))
    d2 = reference_d2(delta, inv_var)
    threshold = d2 * 10.0 ** rng.uniform(-0.6, 1.4) if d2 > 0 else 1.0
    return dict(K=K, lam=lam, eps=eps, budget=budget, threshold=threshold, dh=dh,
                delta=delta, prior=prior, inv_var=inv_var, v=v, d2=d2)


@pytest.mark.parametrize("isa", ISAS)
def test_ten_thousand_random_instances_obey_plausibility_certificate_and_budget(
        isa: _core.Isa) -> None:
    rng = np.random.default_rng(20240611)
    counts = {PASS: 0, IMPLAUSIBLE: 0, UNCERTIFIED: 0}
    worst_ratio = 0.0  # max true error / reported bound over passes
    tested = 0
    while tested < 10_000:
        c = random_instance(rng)
        if abs(c["d2"] - c["threshold"]) <= 1e-6 * c["threshold"]:
            continue
        tested += 1
        K, n = c["K"], nnz(c["K"])
        params = _core.GateParams(c["eps"], c["budget"], c["lam"], c["threshold"])
        gate = _core.SolverGate(params, horizons=K, dh=c["dh"], isa=isa)
        assert gate.isa == isa and gate.fixed_size == (K <= MAX_FIXED_K)
        r = gate.run(c["delta"], c["prior"], c["inv_var"], c["v"])
        where = f"instance {tested}: K={K} lam={c['lam']!r} eps={c['eps']!r} budget={c['budget']}"

        # plausibility
        assert r["d2"] == pytest.approx(c["d2"], rel=1e-9, abs=1e-300), where
        implausible = c["d2"] > c["threshold"]
        assert (r["verdict"] == IMPLAUSIBLE) == implausible, where
        # the budget is never exceeded; work is whole residual passes
        assert r["work"] <= c["budget"], where
        assert r["work"] % n == 0, where
        counts[r["verdict"]] += 1
        if implausible:
            assert r["path"] is None and r["work"] == 0 and not r["certified"], where
            continue

        # the same instance with an unlimited budget: the iteration does not
        # depend on the budget, so the limited run passes iff the unlimited
        # run needed no more work than the budget allowed
        big = _core.SolverGate(_core.GateParams(c["eps"], UNLIMITED, c["lam"], c["threshold"]),
                               horizons=K, dh=c["dh"], isa=isa)
        rb = big.run(c["delta"], c["prior"], c["inv_var"], c["v"])
        assert rb["verdict"] == PASS, where
        if r["verdict"] == UNCERTIFIED:
            assert r["path"] is None and not r["certified"], where
            assert rb["work"] > c["budget"], where
            if c["budget"] < n:
                assert r["work"] == 0 and r["error_bound"] == math.inf, where
            continue
        assert r["verdict"] == PASS, where
        assert rb["work"] == r["work"] and np.array_equal(rb["path"], r["path"]), where

        # the certificate
        assert r["certified"], where
        assert r["work"] == (r["iterations"] + 1) * n, where  # plus the certifying residual
        assert r["error_bound"] <= c["eps"] * SLACK, where
        assert r["residual_norm"] <= r["error_bound"] * SLACK, where
        A = reference_matrix(K, c["lam"])
        b = reference_rhs(c["delta"], c["prior"], c["v"], c["lam"], c["dh"])
        x_ref = accurate_solve(A, b)
        path = r["path"].reshape(K, 2).astype(np.longdouble)
        err = float(np.sqrt(np.sum((path - x_ref) ** 2)))
        assert err <= r["error_bound"] * SLACK, f"{where}: error {err!r} > bound"
        # lambda_min(A) >= 1, so the exact residual of the path is bounded too
        resid = float(np.sqrt(np.sum((b.astype(np.longdouble)
                                      - A.astype(np.longdouble) @ path) ** 2)))
        assert resid <= r["error_bound"] * SLACK, where
        if r["error_bound"] > 0:
            worst_ratio = max(worst_ratio, err / r["error_bound"])

    # every branch was really exercised
    assert counts[PASS] > 3000 and counts[IMPLAUSIBLE] > 1500 and counts[UNCERTIFIED] > 1000, counts
    assert worst_ratio <= SLACK


@pytest.mark.parametrize("isa", ISAS)
def test_fixed_size_kernels_return_the_bits_of_the_generic_solver(isa: _core.Isa) -> None:
    """gate.hpp, 4.: each ISA's register kernel performs jacobi_solve's
    operations in jacobi_solve's order, so on the same system (the gate's
    matrix in CSR, the same right-hand side, start and damping) it returns
    the same path, certificate, work and iterations, bit for bit."""
    rng = np.random.default_rng(99)
    checked = certified = 0
    while checked < 10_000:
        c = random_instance(rng)
        K = c["K"]
        if K > MAX_FIXED_K:
            continue
        c["threshold"] = math.inf  # the projection always runs
        gate = make_gate(K, c["lam"], eps=c["eps"], budget=c["budget"], threshold=math.inf,
                         dh=c["dh"], isa=isa)
        assert gate.fixed_size
        r = gate.run(c["delta"], c["prior"], c["inv_var"], c["v"])
        q = c["prior"] + c["delta"].astype(np.float64)
        b = q.copy()
        b[0] += c["lam"] * c["v"][0] * c["dh"]
        b[1] += c["lam"] * c["v"][1] * c["dh"]
        A = scipy_sparse.csr_matrix(gate.matrix())
        omega = (1.0 + 6.0 * c["lam"]) / (1.0 + 8.0 * c["lam"])  # gate.cpp's damping
        x, ref = _core.jacobi_solve(A.indptr.astype(np.int64), A.indices.astype(np.int64),
                                    A.data, b, q, c["eps"], c["budget"], 1.0, omega)
        where = f"instance {checked}: K={K} lam={c['lam']!r} eps={c['eps']!r}"
        for key in ("error_bound", "residual_norm", "work", "iterations", "certified"):
            assert r[key] == ref[key], f"{where}: {key} {r[key]!r} != {ref[key]!r}"
        if ref["certified"]:
            certified += 1
            assert r["verdict"] == PASS and np.array_equal(r["path"], x), where
        checked += 1
    assert certified > 3000


@pytest.mark.parametrize("K", [1, 2, 3, 10, 16, 17, 32])
def test_horizons_up_to_sixteen_get_a_fixed_size_kernel(K: int) -> None:
    assert make_gate(K, 0.1).fixed_size == (K <= MAX_FIXED_K)


def test_proposal_that_is_already_smooth_is_certified_by_the_first_residual() -> None:
    # q = the constant-velocity continuation, exactly smooth: D u + c = 0
    K, lam, dh = 10, 0.2, 0.05
    v = np.array([1.0, -2.0])
    prior = np.stack([v[0] * dh * np.arange(1, K + 1), v[1] * dh * np.arange(1, K + 1)],
                     axis=1).ravel()
    r = make_gate(K, lam, eps=1e-9, dh=dh).run(np.zeros(2 * K, np.float32), prior,
                                               np.ones(2 * K), v)
    assert r["verdict"] == PASS
    assert r["iterations"] == 0 and r["work"] == nnz(K)
    np.testing.assert_allclose(r["path"], prior, rtol=0, atol=1e-9)


def test_plausibility_threshold_is_inclusive() -> None:
    # d2 = mean_k (1 * 1 + 1 * 1) = 2 exactly
    K = 6
    args = (np.ones(2 * K, np.float32), np.zeros(2 * K), np.ones(2 * K), np.zeros(2))
    at = make_gate(K, 0.1, threshold=2.0).run(*args)
    assert at["d2"] == 2.0 and at["verdict"] == PASS
    below = make_gate(K, 0.1, threshold=math.nextafter(2.0, 0.0)).run(*args)
    assert below["verdict"] == IMPLAUSIBLE and below["path"] is None


# --------------------------------------------------------------------------
# budgets
# --------------------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3, 16, 32])
def test_budget_smaller_than_one_residual_is_uncertified_without_work(K: int) -> None:
    n = nnz(K)
    for budget in (0, 1, n - 1):
        if budget >= n:
            continue
        r = make_gate(K, 0.1, budget=budget).run(np.zeros(2 * K, np.float32), np.zeros(2 * K),
                                                 np.ones(2 * K), np.zeros(2))
        assert r["verdict"] == UNCERTIFIED and r["path"] is None
        assert r["work"] == 0 and not r["certified"] and r["error_bound"] == math.inf


def test_budget_one_short_of_a_residual_pass_is_uncertified() -> None:
    # b = 0 and u = 0: the first residual (nnz work, both axes) certifies
    K = 8
    n = nnz(K)
    args = (np.zeros(2 * K, np.float32), np.zeros(2 * K), np.ones(2 * K), np.zeros(2))
    short = make_gate(K, 0.1, budget=n - 1).run(*args)
    assert short["verdict"] == UNCERTIFIED and short["work"] == 0 and short["path"] is None
    exact = make_gate(K, 0.1, budget=n).run(*args)
    assert exact["verdict"] == PASS and exact["work"] == n and exact["error_bound"] == 0.0


def test_large_residuals_with_small_budgets_are_uncertified_and_stay_in_budget() -> None:
    rng = np.random.default_rng(7)
    K = 32
    n = nnz(K)
    for budget in range(n, 30 * n, 37):
        delta = (rng.standard_normal(2 * K) * 100.0).astype(np.float32)
        r = make_gate(K, 0.24, eps=1e-6, budget=budget).run(
            delta, np.zeros(2 * K), np.full(2 * K, 1e-8), np.array([50.0, -50.0]))
        assert r["verdict"] == UNCERTIFIED and r["path"] is None and not r["certified"]
        assert 0 < r["work"] <= budget and r["work"] % n == 0


# --------------------------------------------------------------------------
# adversarial inputs
# --------------------------------------------------------------------------

def exact_error_squared(path: np.ndarray, K: int, lam: float, dh: float, delta: np.ndarray,
                        prior: np.ndarray, v: np.ndarray) -> Fraction:
    """||path - p*||^2 for the exact projection of the exact inputs (no rounding anywhere)."""
    total = Fraction(0)
    for axis in range(2):
        b = [Fraction(float(prior[2 * k + axis])) + Fraction(float(delta[2 * k + axis]))
             for k in range(K)]
        b[0] += Fraction(lam) * Fraction(float(v[axis])) * Fraction(dh)
        u = exact_solve(K, lam, b)
        total += sum((Fraction(float(path[2 * k + axis])) - u[k]) ** 2 for k in range(K))
    return total


@pytest.mark.parametrize("isa", ISAS)
def test_bound_is_rigorous_in_exact_arithmetic_for_huge_values_and_tight_eps(
        isa: _core.Isa) -> None:
    # Values around 1e8 with eps a few times the rounding floor: the certificate
    # is then dominated by the rounding term, the hardest case for its proof.
    rng = np.random.default_rng(3)
    passes = 0
    for i in range(60):
        K = int(rng.integers(1, 33))
        lam = float(rng.choice([1e-6, 0.1, 0.2, 0.2499]))
        dh = 0.05
        scale = 10.0 ** rng.uniform(5, 9)
        delta = (rng.standard_normal(2 * K) * scale).astype(np.float32)
        prior = rng.standard_normal(2 * K) * scale
        v = rng.standard_normal(2) * scale
        eps = scale * 10.0 ** rng.uniform(-14, -11)
        r = make_gate(K, lam, eps=eps, budget=10**7, dh=dh, isa=isa).run(delta, prior,
                                                                         np.zeros(2 * K), v)
        if r["verdict"] != PASS:
            assert r["verdict"] == UNCERTIFIED and r["path"] is None
            continue
        passes += 1
        assert r["error_bound"] <= eps * SLACK
        err2 = exact_error_squared(r["path"], K, lam, dh, delta, prior, v)
        assert err2 <= Fraction(r["error_bound"]) ** 2 * Fraction(SLACK) ** 2, (
            f"case {i}: K={K} lam={lam} exact error {math.sqrt(err2)!r} > "
            f"bound {r['error_bound']!r}")
    assert passes >= 20  # most cases are certifiable, so the check has teeth


@pytest.mark.parametrize("isa", ISAS)
def test_eps_below_the_rounding_floor_is_never_certified(isa: _core.Isa) -> None:
    K = 16
    rng = np.random.default_rng(11)
    delta = (rng.standard_normal(2 * K) * 1e8).astype(np.float32)
    prior = rng.standard_normal(2 * K) * 1e8
    r = make_gate(K, 0.1, eps=1e-6, budget=10**6, isa=isa).run(delta, prior, np.zeros(2 * K),
                                                               np.array([1e8, 1e8]))
    # gamma * ||b|| alone is ~1e-15 * 1e9 >> eps: no honest certificate exists
    assert r["verdict"] == UNCERTIFIED and r["path"] is None and not r["certified"]
    assert r["error_bound"] > 1e-6 and r["work"] <= 10**6


@pytest.mark.parametrize("field,value,verdict", [
    ("delta", math.nan, IMPLAUSIBLE),
    ("delta", math.inf, IMPLAUSIBLE),
    ("inv_var", math.nan, IMPLAUSIBLE),
    ("inv_var", math.inf, IMPLAUSIBLE),
    ("prior", math.nan, UNCERTIFIED),
    ("prior", math.inf, UNCERTIFIED),
    ("prior", 1e300, UNCERTIFIED),
    ("v", math.nan, UNCERTIFIED),
    ("v", -math.inf, UNCERTIFIED),
])
@pytest.mark.parametrize("isa", ISAS)
def test_non_finite_inputs_never_pass(field: str, value: float, verdict: tmn.Verdict,
                                      isa: _core.Isa) -> None:
    K = 8
    args = dict(delta=np.full(2 * K, 0.5, np.float32), prior=np.ones(2 * K),
                inv_var=np.ones(2 * K), v=np.ones(2))
    args[field] = args[field].copy()
    args[field][0] = value
    r = make_gate(K, 0.1, budget=10_000, isa=isa).run(**args)
    assert r["verdict"] == verdict
    assert r["path"] is None and not r["certified"] and r["work"] <= 10_000
