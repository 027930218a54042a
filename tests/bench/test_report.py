"""tmn_bench.report: the markdown cells, tables, command line and the one target
printer every bench report uses."""

from __future__ import annotations

import math

import pytest

from tmn_bench import report
from tmn_bench.results import Target


def test_cells_are_readable_numbers() -> None:
    assert report.cell(None) == "n/a" and report.cell(math.nan) == "n/a"
    assert report.cell(True) == "yes" and report.cell(12345) == "12,345"
    assert report.cell(246470.3) == "246,470"  # large: whole units with separators
    assert report.cell(0.0123456) == "0.01235"  # 4 significant digits
    assert report.cell(2.5e-7) == "2.5e-07" and report.cell(0.0) == "0"
    assert report.cell("a|b") == "a\\|b"  # a pipe would split the cell


def test_table_has_a_header_rule_and_one_row_per_item() -> None:
    t = report.table(["a", "b"], [[1, 0.5], ["x", None]]).splitlines()
    assert t == ["| a | b |", "|---|---|", "| 1 | 0.5 |", "| x | n/a |"]


def test_command_line_reads_like_the_typed_command() -> None:
    argv = ["/venv/lib/python3.11/site-packages/tmn_bench/cli.py", "accuracy", "--data", "lasa"]
    assert report.command_line(argv) == "tmn-bench accuracy --data lasa"
    assert report.command_line(["/usr/bin/tmn-bench", "latency"]) == "tmn-bench latency"
    assert report.command_line(["pytest", "-q"]) == "pytest -q"
    assert report.command_line([]) == "n/a"


def test_one_printer_states_every_target_with_its_value_limit_and_note() -> None:
    ts = [Target("tick P50", 421.0, 500.0, "<=", "ns", "System B", "issue 2"),
          Target("throughput", 2.5e6, 2e6, ">=", "ticks/s", "", "issue 2"),
          Target("vs onnxruntime", None, 10.0, ">=", "x", "onnxruntime missing", "issue 2")]
    lines = report.target_lines(ts)
    assert lines[0].strip() == "[MET    ] tick P50        421 ns <= 500 ns  (System B)"
    assert "[MET    ] throughput" in lines[1] and "2.50 M ticks/s >= 2.00 M ticks/s" in lines[1]
    assert "[SKIPPED] vs onnxruntime" in lines[2] and "n/a >= 10.00x" in lines[2]
    assert report.count_text(ts) == "2 MET, 0 MISSED, 1 SKIPPED (of 3)"
    table = report.targets_table(ts).splitlines()
    assert table[0] == "| status | target | value | limit | unit | note | stated in |"
    assert table[2].startswith("| **MET** | tick P50 | 421 | <= 500 | ns | System B | issue 2 |")


def test_a_target_that_was_not_measured_must_say_why() -> None:
    with pytest.raises(ValueError, match="SKIPPED without a reason"):
        Target("tick P50", None, 500.0, "<=", "ns", "", "issue 2")
    with pytest.raises(ValueError, match="op must be"):
        Target("tick P50", 1.0, 500.0, "==", "ns", "", "issue 2")


def test_strict_targets_are_missed_at_their_limit() -> None:
    """'<' and '>' (issue 15: INT8 faster than FP32) exclude the limit itself."""
    assert Target("INT8 / FP32", 1.0, 1.0, "<", "x", "", "issue 15").status == "MISSED"
    assert Target("INT8 / FP32", 0.99, 1.0, "<", "x", "", "issue 15").status == "MET"
    assert Target("a / b", 1.0, 1.0, ">", "x", "", "issue 15").status == "MISSED"
    assert Target("a / b", 1.0, 1.0, "<=", "x", "", "issue 15").status == "MET"
