"""tmn_bench: the benchmarks of tmn, their baselines and every stated target
(bench/README.md explains every figure and how to reproduce it).

The package depends on tmn (and, for ``tmn-bench accuracy``, on tmn_train,
imported only there); neither depends on it. ``tmn_bench.cli`` is the
``tmn-bench`` command and nothing imports it. The benchmarks are
``engine``, ``serve``, ``latency`` and ``accuracy``; ``results`` holds their
typed results, ``targets`` every stated target with its source, ``report``
the shared output, ``workload`` the synthetic motion, ``common`` the rest
they share, and ``baselines`` onnxruntime, PyTorch eager and the naive server.
"""

from importlib import metadata

__version__: str = metadata.version("tmn-bench")  # pyproject.toml is the one source
