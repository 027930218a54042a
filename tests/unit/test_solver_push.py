"""Forward-push personalised PageRank (tmn._core.PushGraph) against networkx and
a direct sparse solve (docs/active-selection.md, "The certificate").

The reference is independent of the push: x = (1 - alpha) s (I - alpha P)^-1 with
the dangling rows of P left zero, by scipy.sparse.linalg.spsolve refined with
extended-precision residuals, then pi = x / ||x||_1 (a dangling node's walk
restarts by s, so pi is proportional to x). networkx.pagerank (which restarts
dangling nodes by the personalisation too) is checked against the same answer.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tmn import _core

BIG = 10**12


def graph_of(A: sp.spmatrix, weighted: bool = True) -> _core.PushGraph:
    A = sp.csr_matrix(A)
    return _core.PushGraph(A.indptr.astype(np.int64), A.indices.astype(np.int64),
                           A.data.astype(np.float64) if weighted else None)


def exact(A: sp.spmatrix, s: np.ndarray, alpha: float) -> np.ndarray:
    """pi in extended precision (see the module docstring)."""
    A = sp.csr_matrix(A, dtype=np.float64)
    w = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, w, out=np.zeros_like(w), where=w > 0)
    P = sp.diags(inv) @ A                                   # dangling rows stay zero
    M = (sp.identity(A.shape[0]) - alpha * P.T).tocsc()     # M x = (1 - alpha) s
    rhs = (1.0 - alpha) * s / s.sum()
    if A.shape[0] <= 64:  # small: dense LU, refined in extended precision
        D = M.toarray()
        x = np.linalg.solve(D, rhs).astype(np.longdouble)
        for _ in range(2):
            x = x + np.linalg.solve(D, (rhs - D.astype(np.longdouble) @ x).astype(np.float64))
        return x / x.sum()
    x = spla.spsolve(M, rhs).astype(np.longdouble)
    Ml = M.tocsr()
    Ml.sort_indices()
    for _ in range(3):  # every row of M holds its diagonal, so reduceat sees no empty row
        ax = np.add.reduceat(Ml.data.astype(np.longdouble) * x[Ml.indices], Ml.indptr[:-1])
        x = x + spla.spsolve(M, (rhs.astype(np.longdouble) - ax).astype(np.float64))
    return x / x.sum()


def solve(g: _core.PushGraph, s: np.ndarray, alpha: float, eps: float,
          budget: int = BIG) -> tuple[np.ndarray, dict]:
    """(the estimate as a dense vector, the result dict) for a dense restart s."""
    nodes = np.flatnonzero(s > 0)
    r = g.pagerank(nodes, s[nodes], alpha, eps, budget)
    x = np.zeros(g.n)
    x[r["nodes"]] = r["estimate"]
    return x, r


def check(A: sp.spmatrix, s: np.ndarray, alpha: float, eps: float, budget: int = BIG,
          where: str = "") -> tuple[np.ndarray, dict]:
    """The certificate's promises on one solve: the true L1 error within the bound,
    the work within the budget, certified iff the bound reached eps."""
    x, r = solve(graph_of(A), s, alpha, eps, budget)
    assert r["work"] <= budget, where
    assert r["certified"] == (r["error_bound"] <= eps), where
    assert np.all(x >= 0) and np.all(r["residual"] >= 0), where
    if math.isfinite(r["error_bound"]):
        err = float(np.abs(x.astype(np.longdouble) - exact(A, s, alpha)).sum())
        assert err <= r["error_bound"], f"{where}: error {err!r} > bound {r['error_bound']!r}"
        # before rounding the bound is the error itself (the estimate is a lower bound)
        assert err >= (r["residual_norm"] / (1 - r["dangling_mass"])) * (1 - 1e-9) - 1e-13, where
    return x, r


def random_graph(rng: np.random.Generator, n: int) -> sp.csr_matrix:
    """A random weighted digraph with the adversarial features mixed in: dangling
    rows, self loops, zero weights, repeated parts and wide weight ranges."""
    density = float(rng.uniform(0.0, min(1.0, 6.0 / max(n, 1))))
    A = sp.random(n, n, density=density, random_state=rng, format="csr")
    A.data = 10.0 ** rng.uniform(-3, 3, size=A.nnz)
    if rng.random() < 0.3:  # more self loops
        A = (A + sp.diags(rng.random(n) * (rng.random(n) < 0.5))).tocsr()
    if rng.random() < 0.3:  # stored zero weights
        A.data[rng.random(A.nnz) < 0.2] = 0.0
    A.sort_indices()
    return A


def random_restart(rng: np.random.Generator, n: int) -> np.ndarray:
    s = np.zeros(n)
    k = int(rng.integers(1, n + 1)) if rng.random() < 0.5 else 1
    s[rng.choice(n, size=k, replace=False)] = rng.uniform(0.01, 5.0, size=k)
    return s


# --------------------------------------------------------------------------
# against networkx and the direct solve


def adversarial_graphs() -> dict[str, sp.csr_matrix]:
    n = 40
    chain = sp.diags(np.ones(n - 1), 1, shape=(n, n))                 # 0 -> 1 -> ... -> 39
    star_out = sp.csr_matrix((np.ones(n - 1), (np.zeros(n - 1), np.arange(1, n))), (n, n))
    star = star_out + star_out.T
    two_parts = sp.block_diag([sp.random(20, 20, 0.2, random_state=1),
                               sp.random(20, 20, 0.2, random_state=2)])
    loops = sp.diags(np.r_[np.ones(10), np.zeros(n - 10)]) + chain   # self loops on a chain
    all_dangling = sp.csr_matrix((n, n))
    return {"long chain": chain, "star, both ways": star, "star, out only": star_out,
            "two disconnected parts": two_parts, "self loops": loops,
            "no edges at all": all_dangling,
            "ring": sp.csr_matrix((np.ones(n), (np.arange(n), (np.arange(n) + 1) % n)), (n, n))}


@pytest.mark.parametrize("name", sorted(adversarial_graphs()))
@pytest.mark.parametrize("alpha", [0.5, 0.85, 0.99])
def test_adversarial_graphs_agree_with_networkx_and_the_direct_solve(name: str,
                                                                     alpha: float) -> None:
    A = sp.csr_matrix(adversarial_graphs()[name])
    n = A.shape[0]
    for restart in ([0], [n - 1], [3, 25], list(range(n))):
        s = np.zeros(n)
        s[restart] = 1.0 + np.arange(len(restart))
        x, r = check(A, s, alpha, 1e-9, where=f"{name} restart {restart}")
        assert r["certified"]
        G = nx.from_scipy_sparse_array(A, create_using=nx.DiGraph)
        ref = nx.pagerank(G, alpha=alpha, personalization={i: s[i] for i in restart},
                          tol=1e-12, max_iter=100_000)
        np.testing.assert_allclose(x, [ref[i] for i in range(n)], atol=1e-8, rtol=0)


@pytest.mark.parametrize("n", [30, 300, 1000])
def test_random_sparse_graphs_agree_with_networkx_within_the_certificate(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(4):
        A = sp.random(n, n, density=8.0 / n, random_state=rng, format="csr")
        A.sort_indices()
        s = random_restart(rng, n)
        eps = float(10.0 ** rng.uniform(-8, -2))
        x, r = check(A, s, 0.85, eps, where=f"n={n} trial={trial}")
        assert r["certified"] and r["error_bound"] <= eps
        G = nx.from_scipy_sparse_array(A, create_using=nx.DiGraph)
        ref = nx.pagerank(G, alpha=0.85, personalization={i: s[i] for i in np.flatnonzero(s)},
                          tol=1e-14 / n, max_iter=10_000)
        assert np.abs(x - [ref[i] for i in range(n)]).sum() <= eps + 1e-9


def test_the_true_error_never_exceeds_the_certificate_on_10000_random_graphs() -> None:
    """Many small graphs (1 to 30 nodes), random damping, eps and budget."""
    rng = np.random.default_rng(10)
    certified = uncertified = 0
    for trial in range(10_000):
        n = int(rng.integers(1, 31))
        A = random_graph(rng, n)
        s = random_restart(rng, n)
        alpha = float(rng.choice([0.1, 0.5, 0.85, 0.95, rng.uniform(0.01, 0.999)]))
        eps = float(10.0 ** rng.uniform(-10, 0))
        budget = int(rng.choice([BIG, int(rng.integers(0, 400))]))
        _, r = check(A, s, alpha, eps, budget, where=f"trial {trial} n={n} alpha={alpha}")
        certified += r["certified"]
        uncertified += not r["certified"]
    assert certified > 3000 and uncertified > 1000  # both branches are exercised


# --------------------------------------------------------------------------
# the budget


def test_the_budget_is_honoured_and_decides_certification_at_the_work_it_needs() -> None:
    # the pushes do not depend on the budget, so the smallest budget that
    # certifies is the work an unlimited solve spends, and one less fails
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(5, 300))
        A = random_graph(rng, n)
        s = random_restart(rng, n)
        g = graph_of(A)
        x_inf, r_inf = solve(g, s, 0.85, 1e-6)
        assert r_inf["certified"]
        x_at, r_at = solve(g, s, 0.85, 1e-6, r_inf["work"])
        assert r_at["certified"] and r_at["work"] == r_inf["work"]
        np.testing.assert_array_equal(x_at, x_inf)
        for budget in (r_inf["work"] - 1, r_inf["work"] // 2, int(np.count_nonzero(s))):
            check(A, s, 0.85, 1e-6, budget, where=f"n={n} budget={budget}")
            _, r = solve(g, s, 0.85, 1e-6, budget)
            assert not r["certified"] and r["work"] <= budget


def test_a_budget_below_the_restart_size_does_nothing_and_certifies_nothing() -> None:
    A = sp.random(50, 50, 0.1, random_state=0, format="csr")
    g = graph_of(A)
    r = g.pagerank(np.arange(10), np.ones(10), 0.85, 0.5, 9)
    assert r["work"] == 0 and not r["certified"] and r["error_bound"] == math.inf
    assert len(r["nodes"]) == 0


def test_work_does_not_grow_with_the_graph_for_a_local_restart() -> None:
    """The sublinear property on 2-D grids of 10^3 and 10^5 nodes (tmn-bench
    pagerank measures it to 10^6 on kNN graphs)."""
    works = []
    for side in (32, 316):
        n = side * side
        right = sp.diags(np.ones(n - 1), 1, shape=(n, n)).tolil()
        for i in range(side - 1, n - 1, side):
            right[i, i + 1] = 0  # no wrap from one row to the next
        down = sp.diags(np.ones(n - side), side, shape=(n, n))
        A = (right.tocsr() + down).tocsr()
        A = (A + A.T).tocsr()
        A.eliminate_zeros()
        centre = (side // 2) * side + side // 2
        r = graph_of(A, weighted=False).pagerank(np.array([centre]), np.ones(1), 0.85, 0.03, BIG)
        assert r["certified"]
        works.append(r["work"])
    assert works[1] <= 2 * works[0], works


# --------------------------------------------------------------------------
# the restart distribution, on hand-made graphs


def test_a_star_restarting_at_its_centre_has_the_closed_form_answer() -> None:
    # pi_c = (1 - a) + a sum_l pi_l,  pi_l = a pi_c / L  =>  pi_c = 1 / (1 + a)
    L, a = 7, 0.85
    out = sp.csr_matrix((np.ones(L), (np.zeros(L), np.arange(1, L + 1))), (L + 1, L + 1))
    x, r = solve(graph_of(out + out.T), np.r_[1.0, np.zeros(L)], a, 1e-12)
    assert r["certified"]
    np.testing.assert_allclose(x, np.r_[1 / (1 + a), np.full(L, a / (1 + a) / L)], atol=1e-12)


def test_a_chain_ending_in_a_dangling_node_restarts_from_there() -> None:
    # 0 -> 1 -> 2, node 2 dangling: pi_0 = (1 - a) + a pi_2, pi_1 = a pi_0, pi_2 = a pi_1
    a = 0.6
    A = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], float))
    x, r = solve(graph_of(A), np.array([1.0, 0, 0]), a, 1e-13)
    p0 = (1 - a) / (1 - a**3)
    np.testing.assert_allclose(x, [p0, a * p0, a * a * p0], atol=1e-12)
    assert r["dangling_mass"] > 0


def test_a_restart_on_one_part_leaves_a_disconnected_part_untouched() -> None:
    A = sp.block_diag([sp.random(10, 10, 0.5, random_state=3),
                       sp.random(10, 10, 0.5, random_state=4) + sp.eye(10)]).tocsr()
    for restart, other in ((np.arange(3), np.arange(10, 20)), (np.array([15]), np.arange(10))):
        r = graph_of(A).pagerank(restart, np.ones(len(restart)), 0.85, 1e-10, BIG)
        assert not np.isin(r["nodes"], other).any()


@pytest.mark.parametrize("graph", ["a single dangling node", "a single self loop"])
def test_a_node_that_only_returns_to_itself_holds_all_the_mass(graph: str) -> None:
    A = sp.csr_matrix((1, 1)) if graph == "a single dangling node" else sp.eye(1, format="csr")
    x, r = solve(graph_of(A), np.array([3.0]), 0.85, 1e-12)
    assert r["certified"]
    np.testing.assert_allclose(x, [1.0], atol=1e-12)


def test_the_restart_is_normalised_and_repeated_nodes_add_up() -> None:
    A = sp.random(20, 20, 0.3, random_state=7, format="csr")
    g = graph_of(A)
    a = g.pagerank(np.array([2, 5]), np.array([1.0, 3.0]), 0.85, 1e-11, BIG)
    b = g.pagerank(np.array([5, 2, 5]), np.array([10.0, 5.0, 5.0]), 0.85, 1e-11, BIG)
    xa, xb = np.zeros(20), np.zeros(20)
    xa[a["nodes"]], xb[b["nodes"]] = a["estimate"], b["estimate"]
    np.testing.assert_allclose(xa, xb, atol=3e-11)


def test_the_workspace_keeps_nothing_from_the_previous_solve() -> None:
    A = sp.random(200, 200, 0.05, random_state=8, format="csr")
    g, fresh = graph_of(A), graph_of(A)
    g.pagerank(np.arange(200), np.ones(200), 0.9, 1e-9, BIG)
    again, once = (h.pagerank(np.array([7]), np.ones(1), 0.5, 1e-6, BIG) for h in (g, fresh))
    assert sorted(again["nodes"]) == sorted(once["nodes"])
    np.testing.assert_array_equal(again["estimate"], once["estimate"])
    assert again["work"] == once["work"]


def test_unweighted_means_every_weight_is_one() -> None:
    A = sp.random(40, 40, 0.1, random_state=9, format="csr")
    B = A.copy()
    B.data[:] = 1.0
    s = np.r_[1.0, np.zeros(39)]
    np.testing.assert_array_equal(solve(graph_of(A, weighted=False), s, 0.85, 1e-9)[0],
                                  solve(graph_of(B), s, 0.85, 1e-9)[0])


# --------------------------------------------------------------------------
# refusals


def push_graph(indptr: list[int], indices: list[int], weights: list[float] | None = None
               ) -> _core.PushGraph:
    return _core.PushGraph(np.array(indptr, np.int64), np.array(indices, np.int64),
                           None if weights is None else np.array(weights, np.float64))


@pytest.mark.parametrize("indptr, indices, weights", [
    ([0], [], None),                             # no node
    ([0, 1, 2], [0, 2], None),                   # index out of range
    ([0, 2, 1], [0, 1], None),                   # indptr decreasing
    ([1, 2, 2], [0, 1], None),                   # indptr not from 0
    ([0, 1, 3], [0, 1], None),                   # indptr end beyond indices
    ([0, 1, 2], [0, 1], [1.0]),                  # weights shorter than indices
    ([0, 1, 2], [0, 1], [1.0, -1.0]),            # negative weight
    ([0, 1, 2], [0, 1], [1.0, math.nan]),        # NaN weight
    ([0, 1, 2], [0, 1], [math.inf, 1.0]),        # infinite weight
    ([0, 2, 2], [0, 1], [1e308, 1e308]),         # a row whose weights overflow
    ([0, 1, 2], [0, 2**32 + 1], None),           # an index that would wrap to int32
])
def test_an_invalid_graph_is_refused_with_value_error(indptr: list[int], indices: list[int],
                                                      weights: list[float] | None) -> None:
    with pytest.raises(ValueError):
        push_graph(indptr, indices, weights)


@pytest.mark.parametrize("nodes, weights, alpha, eps", [
    ([], [], 0.85, 0.1),             # no restart node
    ([3], [1.0], 0.85, 0.1),         # node out of range
    ([-1], [1.0], 0.85, 0.1),        # negative node
    ([0], [-1.0], 0.85, 0.1),        # negative weight
    ([0], [math.nan], 0.85, 0.1),    # NaN weight
    ([0, 1], [0.0, 0.0], 0.85, 0.1),  # zero sum
    ([0, 1], [1.0], 0.85, 0.1),      # lengths differ
    ([0], [1.0], 0.0, 0.1),          # alpha 0
    ([0], [1.0], 1.0, 0.1),          # alpha 1
    ([0], [1.0], math.nan, 0.1),     # alpha NaN
    ([0], [1.0], 0.85, 0.0),         # eps 0
    ([0], [1.0], 0.85, math.nan),    # eps NaN
])
def test_an_invalid_restart_or_parameter_is_refused_with_value_error(
        nodes: list[int], weights: list[float], alpha: float, eps: float) -> None:
    g = push_graph([0, 1, 2, 3], [1, 2, 0])
    with pytest.raises(ValueError):
        g.pagerank(np.array(nodes, np.int64), np.array(weights, np.float64), alpha, eps, 1000)
