"""``tmn-bench pagerank``: the forward-push personalised PageRank of the solver
module (``tmn._core.PushGraph``) at a fixed eps with a restart on a few nodes,
on kNN graphs of 10^3 to 10^6 nodes, against networkx and a scipy power
iteration at the same accuracy.

The graphs are the symmetrised k-nearest-neighbour graphs (k = 15, as active
selection builds over training windows) of n points drawn uniformly in a square
of side sqrt(n), so the density and every neighbourhood look alike at every
size. The restart is uniform on the ``restart`` points nearest the centre. The
push's work (touched entries, machine-independent) should not grow with n; its
certificate bounds its L1 error, which is measured at the comparison size
against a power iteration run to 1e-14. networkx.pagerank runs with the
tolerance that guarantees the same L1 error (``eps (1 - alpha) / (alpha n)``:
its stopping rule bounds the change per sweep, and the error is at most
``alpha / (1 - alpha)`` times that), timed on a graph built beforehand.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from tmn import _core
from tmn_bench import targets as tg
from tmn_bench.common import Log, load_average, machine_info
from tmn_bench.report import target_lines
from tmn_bench.results import (Percentiles, PushAtSize, PushComparison, PushResult,
                               PushWorkload)

SIZES = (1_000, 10_000, 100_000, 1_000_000)
K, ALPHA, EPS, RESTART = 15, 0.85, 0.03, 5
BUDGET = 10**12


def knn_points_graph(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, points) of the symmetrised kNN graph of n uniform points
    in a square of side sqrt(n) (scipy's k-d tree; fast in 2-D)."""
    from scipy.spatial import cKDTree

    pts = np.random.default_rng(seed).random((n, 2)) * np.sqrt(n)
    _, idx = cKDTree(pts).query(pts, k + 1)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = idx[:, 1:].ravel().astype(np.int64)
    keys = np.unique(np.concatenate([rows * n + cols, cols * n + rows]))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=n))])
    return indptr.astype(np.int64), (keys % n).astype(np.int64), pts


def centre_nodes(pts: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` points nearest the centre of the square."""
    c = pts.max(axis=0) / 2
    return np.argsort(((pts - c) ** 2).sum(axis=1))[:count].astype(np.int64)


def push_at(n: int, repeats: int, seed: int, log: Log
            ) -> tuple[PushAtSize, tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
    """Build the graph of n nodes and time ``repeats`` solves (the same each time)."""
    t0 = time.perf_counter()
    indptr, indices, pts = knn_points_graph(n, K, seed)
    g = _core.PushGraph(indptr, indices)
    build_s = time.perf_counter() - t0
    nodes = centre_nodes(pts, RESTART)
    weights = np.ones(len(nodes))
    ns, r = [], {}
    for _ in range(repeats):
        t = time.perf_counter_ns()
        r = g.pagerank(nodes, weights, ALPHA, EPS, BUDGET)
        ns.append(time.perf_counter_ns() - t)
    log(f"n={n:,}: work {r['work']:,}, {r['pushes']:,} pushes, support {len(r['nodes']):,}, "
        f"bound {r['error_bound']:.4f}, P50 {np.median(ns) / 1e6:.3f} ms")
    size = PushAtSize(n=n, edges=int(g.nnz), graph_seconds=build_s, work=int(r["work"]),
                      pushes=int(r["pushes"]), support=len(r["nodes"]),
                      rounds=int(r["iterations"]), error_bound=float(r["error_bound"]),
                      certified=bool(r["certified"]), solve_ns=Percentiles.of(ns))
    return size, (indptr, indices, nodes, r)


def power_iteration(indptr: np.ndarray, indices: np.ndarray, s: np.ndarray,
                    tol: float) -> tuple[np.ndarray, float]:
    """PageRank by power iteration in scipy (no dangling node in a kNN graph), until
    the L1 change of a sweep is below ``tol``; (pi, seconds)."""
    import scipy.sparse as sp

    n = len(indptr) - 1
    A = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))
    PT = (sp.diags(1.0 / np.diff(indptr)) @ A).T.tocsr()
    t0 = time.perf_counter()
    x = s.copy()
    while True:
        nxt = ALPHA * (PT @ x) + (1.0 - ALPHA) * s
        change = float(np.abs(nxt - x).sum())
        x = nxt
        if change < tol:
            return x, time.perf_counter() - t0


def timed(f: Callable[[], object], repeats: int) -> tuple[object, float]:
    """(the last result, the median seconds of ``repeats`` calls)."""
    secs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        secs.append(time.perf_counter() - t0)
    return out, float(np.median(secs))


def compare(graph: tuple[np.ndarray, np.ndarray, np.ndarray, dict], push_s: float,
            nx_repeats: int, log: Log) -> PushComparison:
    """The push against networkx and a scipy power iteration on one graph."""
    import networkx as nx

    indptr, indices, nodes, r = graph
    n = len(indptr) - 1
    s = np.zeros(n)
    s[nodes] = 1.0 / len(nodes)
    exact, _ = power_iteration(indptr, indices, s, 1e-14)  # error <= 1e-14 alpha / (1 - alpha)
    x = np.zeros(n)
    x[r["nodes"]] = r["estimate"]
    push_err = float(np.abs(x - exact).sum())
    tol = EPS * (1.0 - ALPHA) / ALPHA                        # the L1 change that certifies EPS
    (power, power_s) = power_iteration(indptr, indices, s, tol)
    t0 = time.perf_counter()
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    G.add_edges_from(zip(np.repeat(np.arange(n), np.diff(indptr)).tolist(), indices.tolist()))
    build_s = time.perf_counter() - t0
    pers = {int(v): 1.0 for v in nodes}
    ref, nx_s = timed(lambda: nx.pagerank(G, alpha=ALPHA, personalization=pers, tol=tol / n),
                      nx_repeats)
    nx_x = np.array([ref[i] for i in range(n)])  # type: ignore[index]
    out = PushComparison(
        n=n, eps=EPS, push_error=push_err, push_error_bound=float(r["error_bound"]),
        push_seconds=push_s, networkx_tol=tol / n,
        networkx_error=float(np.abs(nx_x - exact).sum()), networkx_seconds=nx_s,
        networkx_graph_seconds=build_s, scipy_power_error=float(np.abs(power - exact).sum()),
        scipy_power_seconds=power_s, networkx_over_push=nx_s / push_s,
        scipy_power_over_push=power_s / push_s)
    log(f"n={n:,}: push error {push_err:.4g} <= bound {out.push_error_bound:.4g}; networkx "
        f"{nx_s:.3f} s (error {out.networkx_error:.3g}), scipy power {power_s:.3f} s, push "
        f"{push_s * 1e3:.3f} ms")
    return out


def run_pagerank_bench(sizes: tuple[int, ...] = SIZES, compare_at: int = 100_000,
                       repeats: int = 20, nx_repeats: int = 3, seed: int = 0,
                       log: Log = print) -> PushResult:
    """``tmn-bench pagerank``: the push at every size, then the comparison at
    ``compare_at`` (which must be one of ``sizes``)."""
    if compare_at not in sizes:
        raise ValueError(f"--compare-at {compare_at} is not one of --sizes {list(sizes)}")
    machine = machine_info()
    at, comparison = [], None
    for n in sizes:
        size, graph = push_at(n, repeats, seed, log)
        at.append(size)
        if n == compare_at:
            comparison = compare(graph, size.solve_ns["p50"] / 1e9, nx_repeats, log)
    assert comparison is not None
    works = [s.work for s in at]
    workload = PushWorkload(
        graph="symmetrised kNN graph of n uniform points in a square of side sqrt(n)", k=K,
        alpha=ALPHA, eps=EPS, restart_nodes=RESTART, restart="uniform on the points nearest "
        "the centre", budget=BUDGET, repeats=repeats, seed=seed)
    r = PushResult(benchmark="pagerank",
                   machine=dataclasses.replace(machine, load_average_end=load_average()),
                   workload=workload, sizes=at, work_max_over_min=max(works) / min(works),
                   comparison=comparison, targets=[])
    return dataclasses.replace(r, targets=tg.pagerank_targets(r))


def format_pagerank_report(r: PushResult) -> str:
    """The terminal table of ``tmn-bench pagerank``."""
    m, w, c = r.machine, r.workload, r.comparison
    out = ["tmn-bench pagerank",
           f"  machine : {m.cpu}, {m.cores} cores; tmn {m.tmn_version} ({m.tmn_git_sha})",
           f"  workload: {w.graph}, k={w.k}; alpha {w.alpha}, eps {w.eps}, restart on "
           f"{w.restart_nodes} nodes; {w.repeats} solves per size",
           "",
           f"  {'nodes':>10}{'edges':>12}{'work':>10}{'pushes':>9}{'support':>9}{'bound':>9}"
           f"{'P50 ms':>9}{'max ms':>9}"]
    for s in r.sizes:
        out.append(f"  {s.n:>10,}{s.edges:>12,}{s.work:>10,}{s.pushes:>9,}{s.support:>9,}"
                   f"{s.error_bound:>9.4f}{s.solve_ns['p50'] / 1e6:>9.3f}"
                   f"{s.solve_ns.max / 1e6:>9.3f}")
    out += ["", f"  work max / min over the sizes: {r.work_max_over_min:.3f}",
            f"  at {c.n:,} nodes, the same L1 accuracy (eps {c.eps}):",
            f"    push          {c.push_seconds * 1e3:9.3f} ms   L1 error {c.push_error:.4g} "
            f"(certificate {c.push_error_bound:.4g})",
            f"    networkx      {c.networkx_seconds * 1e3:9.1f} ms   L1 error "
            f"{c.networkx_error:.4g} (tol {c.networkx_tol:.3g}; graph built in "
            f"{c.networkx_graph_seconds:.1f} s, not counted)",
            f"    scipy power   {c.scipy_power_seconds * 1e3:9.1f} ms   L1 error "
            f"{c.scipy_power_error:.4g}",
            f"    networkx / push {c.networkx_over_push:,.0f}x, scipy power / push "
            f"{c.scipy_power_over_push:,.0f}x", "", "  targets"]
    return "\n".join(out + target_lines(r.targets, indent="    "))
