"""``tmn-bench pagerank`` on small graphs: the typed result, its targets (stated in
issue 10), the JSON, and the CLI's refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tmn_bench import pagerank
from tmn_bench.results import to_json


def test_the_push_is_measured_at_every_size_and_compared_with_networkx() -> None:
    r = pagerank.run_pagerank_bench((1_000, 4_000), compare_at=4_000, repeats=3, nx_repeats=1,
                                    log=lambda m: None)
    assert [s.n for s in r.sizes] == [1_000, 4_000]
    for s in r.sizes:
        assert s.certified and s.error_bound <= pagerank.EPS
        assert 0 < s.work <= pagerank.BUDGET and s.support <= s.n and s.solve_ns.n == 3
    assert r.work_max_over_min == max(s.work for s in r.sizes) / min(s.work for s in r.sizes)
    c = r.comparison
    assert c.n == 4_000 and c.push_error <= c.push_error_bound <= pagerank.EPS
    assert c.networkx_error <= pagerank.EPS and c.scipy_power_error <= pagerank.EPS
    assert c.networkx_over_push == c.networkx_seconds / c.push_seconds
    assert {t.source for t in r.targets} == {"issue 10"} and len(r.targets) == 3
    assert all(t.status != "SKIPPED" for t in r.targets)
    j = to_json(r)
    assert j["benchmark"] == "pagerank" and j["sizes"][0]["solve_ns"]["p50"] > 0
    assert json.loads(json.dumps(j))["comparison"]["n"] == 4_000


def test_the_knn_graph_is_symmetric_without_self_loops() -> None:
    indptr, indices, pts = pagerank.knn_points_graph(500, 15, seed=1)
    rows = np.repeat(np.arange(500), np.diff(indptr))
    edges = set(zip(rows.tolist(), indices.tolist()))
    assert {(b, a) for a, b in edges} == edges and not any(a == b for a, b in edges)
    assert np.diff(indptr).min() >= 15 and len(pts) == 500


def test_the_cli_writes_json_and_refuses_a_comparison_size_it_does_not_run(
        tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tmn_bench.cli", "pagerank", *args],
                              capture_output=True, text=True, timeout=300)

    p = cli("--sizes", "1000", "2000", "--compare-at", "2000", "--repeats", "2",
            "--nx-repeats", "1", "--json", str(tmp_path / "pr.json"))
    assert p.returncode == 0, p.stderr
    assert "networkx / push" in p.stdout and "[MET" in p.stdout
    assert json.loads((tmp_path / "pr.json").read_text())["benchmark"] == "pagerank"
    bad = cli("--sizes", "1000", "--compare-at", "5000")
    assert bad.returncode == 2 and "not one of --sizes" in bad.stderr
    assert "Traceback" not in bad.stderr
    tiny = cli("--sizes", "10", "--compare-at", "10")
    assert tiny.returncode == 2 and "must be above 15 nodes" in tiny.stderr
