"""The shape of the tree (DESIGN.md, "Layout"; STYLE.md), checked on the sources.

* Imports flow one way, tmn <- tmn_train <- tmn_bench: tmn imports neither
  other package, tmn_train does not import tmn_bench, there is no import
  cycle between modules, and nothing imports the ``tmn-bench`` command line
  (tmn_bench.cli). Every import counts, lazy ones inside functions included.
* No function is longer than 80 lines in Python (package code: python/,
  training/, bench/) or 120 lines in C++ (every .cpp and .hpp, tests included).
* The "no prediction" verdict byte and the reported percentiles are C++
  constants, not Python literals.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tmn import _core

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"tmn": ROOT / "python" / "tmn", "tmn_train": ROOT / "training" / "tmn_train",
            "tmn_bench": ROOT / "bench" / "tmn_bench"}
ALLOWED = {"tmn": set(), "tmn_train": {"tmn"}, "tmn_bench": {"tmn", "tmn_train"}}
MAX_PY_LINES, MAX_CPP_LINES = 80, 120


def module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Every module of the three packages: dotted name -> file."""
    return {module_name(pkg, f): f for pkg, root in PACKAGES.items()
            for f in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the three packages that ``name`` imports, anywhere in it
    (``from a import b`` counts as a.b when that is a module)."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in out if m.split(".")[0] in PACKAGES} - {name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = sources()
    known = {*mods, "tmn._core"}  # the compiled module is a module too
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_the_three_packages_are_all_there(graph: dict[str, set[str]]) -> None:
    for pkg in PACKAGES:
        assert pkg in graph, f"{pkg} not found under {PACKAGES[pkg]}"
    assert len(graph) > 30


def test_imports_flow_one_way_tmn_then_tmn_train_then_tmn_bench(
        graph: dict[str, set[str]]) -> None:
    bad = [f"{m} imports {i}" for m, imps in graph.items() for i in imps
           if i.split(".")[0] != m.split(".")[0] and i.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_command_line(graph: dict[str, set[str]]) -> None:
    assert [m for m, imps in graph.items() if "tmn_bench.cli" in imps] == []


def test_no_module_import_cycle(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n in graph and n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_an_import_cycle_would_be_found(tmp_path: Path) -> None:
    """The checker itself: a planted cycle and a planted lazy cli import are seen."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from tmn_bench import cli\n    import tmn_train.b\n")
    b.write_text("from tmn_train import a\n")
    known = {"tmn_train.a", "tmn_train.b", "tmn_bench.cli"}
    assert imports_of("tmn_train.a", a, known) == {"tmn_bench.cli", "tmn_train.b"}
    g = {"tmn_train.a": imports_of("tmn_train.a", a, known),
         "tmn_train.b": imports_of("tmn_train.b", b, known)}
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_module_import_cycle(g)


# ---------------------------------------------------------------------------
# Function lengths


def long_python_functions(path: Path, limit: int = MAX_PY_LINES) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > limit]


def test_no_python_function_is_longer_than_80_lines() -> None:
    """Package code only: the tests are left out (one integration test is longer)."""
    long = [x for f in sources().values() for x in long_python_functions(f)]
    assert not long, "\n".join(long)


def _strip_cpp(src: str) -> str:
    """Comments, string and character literals and preprocessor lines blanked,
    newlines kept (so line numbers stay)."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|'
                         r'^[ \t]*#[^\n]*', re.S | re.M)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), src)


FUNCTION_HEAD = re.compile(r"\)\s*(?:const|noexcept|override|final|mutable|->[^;{}]*|\s)*$|"
                           r"\)\s*:[^;{}]*$")  # ") const noexcept {" or a constructor's ": a(b) {"
NOT_A_FUNCTION = re.compile(r"^\s*(?:if|for|while|switch|catch|return)\b|\b(?:namespace|class|"
                            r"struct|enum|union)\b[^()]*$|=\s*\[|\[[^\]]*\]\s*\(")


def cpp_functions(src: str) -> list[tuple[int, int, str]]:
    """(first line, lines, head) of every outermost function body in ``src``:
    a ``{`` after a parameter list, not inside another function (lambdas and
    blocks count as part of theirs)."""
    s = _strip_cpp(src)
    out: list[tuple[int, int, str]] = []
    stack: list[tuple[bool, int, str]] = []
    boundary, depth_in_function = 0, 0
    for i, c in enumerate(s):
        if c == "{":
            head = " ".join(s[boundary:i].split())
            is_fn = (depth_in_function == 0 and bool(FUNCTION_HEAD.search(head))
                     and not NOT_A_FUNCTION.search(head))
            start = s.count("\n", 0, boundary + len(s[boundary:i]) - len(s[boundary:i].lstrip()))
            stack.append((is_fn, start + 1, head[:70]))
            depth_in_function += is_fn
            boundary = i + 1
        elif c == "}":
            is_fn, start, head = stack.pop()
            if is_fn:
                depth_in_function -= 1
                out.append((start, s.count("\n", 0, i) + 1 - start + 1, head))
            boundary = i + 1
        elif c == ";":
            boundary = i + 1
    return out


def test_the_cpp_function_finder_sees_functions_and_only_functions() -> None:
    src = ("namespace tmn {\n// int fake() {\nstruct S {\n  int f() const noexcept {\n"
           "    if (x) {\n      return 1;\n    }\n    return 0;\n  }\n};\n"
           "Engine::Engine(int a)\n    : a_(a) {\n  auto l = [&](int q) { return q; };\n}\n}\n")
    got = [(start, n) for start, n, _ in cpp_functions(src)]
    assert got == [(4, 6), (11, 4)]


def test_no_cpp_function_is_longer_than_120_lines() -> None:
    files = sorted([*(ROOT / "cpp").rglob("*.[ch]pp"), *(ROOT / "tests").rglob("*.cpp")])
    assert len(files) > 20
    long = [f"{f.relative_to(ROOT)}:{start} {head} ({n} lines)" for f in files
            for start, n, head in cpp_functions(f.read_text(encoding="utf-8"))
            if n > MAX_CPP_LINES]
    assert not long, "\n".join(long)


def test_the_no_prediction_verdict_is_not_a_python_literal() -> None:
    """It is tmn.NO_PREDICTION (kNoPrediction in C++); 255 written again in
    Python was the issue's example of one constant in seven places."""
    found = [f"{path.relative_to(ROOT)}:{n.lineno}" for path in sources().values()
             for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(n, ast.Constant) and n.value == 255 and type(n.value) is int]
    assert not found, found


def test_the_reported_percentiles_are_not_written_again_in_python() -> None:
    """They are tmn.PERCENTILES (kReportedPercentiles in C++): no tuple, list or
    dict in package code spells out their names again (tmn.metrics once did)."""
    names = {name for name, _ in _core.PERCENTILES}
    found = []
    for path in sources().values():
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                strings = {c.value for c in ast.walk(n)
                           if isinstance(c, ast.Constant) and isinstance(c.value, str)}
                if names <= strings:
                    found.append(f"{path.relative_to(ROOT)}:{n.lineno}")
    assert not found, found
