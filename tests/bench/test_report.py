"""tmn.report: the markdown cells, tables and command line every bench report uses."""

from __future__ import annotations

import math

from tmn import report


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
    argv = ["/venv/lib/python3.11/site-packages/tmn/bench.py", "accuracy", "--data", "lasa"]
    assert report.command_line(argv) == "tmn-bench accuracy --data lasa"
    assert report.command_line(["/usr/bin/tmn-bench", "latency"]) == "tmn-bench latency"
    assert report.command_line(["pytest", "-q"]) == "pytest -q"
    assert report.command_line([]) == "n/a"
