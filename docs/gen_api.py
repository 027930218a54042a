"""Write docs/api.md: the reference of the ``tmn`` Python package and of every CLI.

Everything in it comes from the installed code: each name in ``tmn.__all__``
with its signature and docstring (the compiled classes' signatures from the
typed stub ``tmn/_core.pyi``), and the ``--help`` of every console script and
subcommand as argparse prints it. tests/integration/test_docs.py regenerates it
and fails when docs/api.md differs, so the page cannot drift from the code.

Usage: ``python docs/gen_api.py`` (rewrite docs/api.md) or ``--check`` (exit 1
if it is stale). Needs tmn, tmn_train and tmn_bench installed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import importlib.metadata
import inspect
import os
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

OUT = Path(__file__).resolve().parent / "api.md"
# console scripts in the order of the page: the runtime's, then training's and the bench's
CLIS = ("tmn-serve", "tmn-client", "tmn-train", "tmn-bench", "tmn-hub")
HELP_COLUMNS = "100"  # argparse wraps --help to $COLUMNS: fixed, so the page is reproducible


class _Annotation(str):
    """A string annotation printed bare (``x: int``, not ``x: 'int'``)."""

    def __repr__(self) -> str:
        return str(self)


def signature(obj: Callable[..., Any], drop_self: bool = False) -> str:
    """``(a: int, b: str = 'x') -> None``, annotations unquoted."""
    sig = inspect.signature(obj)
    params = [p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str)
              else p for p in sig.parameters.values()]
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    ret = sig.return_annotation
    return str(sig.replace(parameters=params,
                           return_annotation=_Annotation(ret) if isinstance(ret, str) else ret))


def stub_members(cls_name: str) -> dict[str, str]:
    """Signatures from tmn/_core.pyi for one compiled class: properties as
    ``: type``, methods as ``(args) -> type`` (pybind11's own are noisier)."""
    import tmn

    tree = ast.parse((Path(tmn.__file__).parent / "_core.pyi").read_text())
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    out: dict[str, str] = {}
    for node in cls.body if cls else []:
        if not isinstance(node, ast.FunctionDef):
            continue
        ret = ast.unparse(node.returns) if node.returns else "None"
        if any(ast.unparse(d) == "property" for d in node.decorator_list):
            out[node.name] = f": {ret}"
        else:
            args = [a for a in ast.unparse(node.args).split(", ") if a != "self"]
            out[node.name] = f"({', '.join(args)}) -> {ret}"
    return out


def doc(obj: Any) -> str:
    """The docstring, dedented, without pybind11's generated signature line, with
    Sphinx roles (``:class:`X```) as plain code spans."""
    text = inspect.getdoc(obj) or ""
    lines = text.splitlines()
    name = getattr(obj, "__name__", "")
    if lines and lines[0].startswith(f"{name}(self"):
        lines = lines[1:]
    elif lines and re.match(rf"{name}\([^)]*\) -> [^:]+: ", lines[0]):  # a C type's own
        lines[0] = lines[0].split(": ", 1)[1]
    return re.sub(r":(?:class|func|data|meth|attr|mod):`~?([^`]+)`", r"`\1`",
                  "\n".join(lines).strip())


def is_enum(cls: type) -> bool:
    """A Python Enum or a pybind11 enum (both have ``__members__``)."""
    return isinstance(cls, type) and (issubclass(cls, enum.Enum) or hasattr(cls, "__members__"))


def class_section(name: str, cls: type) -> Iterator[str]:
    """A class: its constructor, docstring, then fields, properties and methods."""
    compiled = cls.__module__ == "tmn._core"
    stub = stub_members(name) if compiled else {}
    if issubclass(cls, BaseException):
        yield f"### `tmn.{name}` (exception, a `{cls.__mro__[1].__name__}`)\n"
        yield doc(cls) + "\n"
        return
    if is_enum(cls):
        yield f"### `tmn.{name}` (enum)\n"
        yield doc(cls).split("\n\nMembers:")[0] + "\n"
        yield "Members: " + ", ".join(f"`{m}` = {int(v)}" for m, v in cls.__members__.items()) + "\n"
        return
    init = "" if compiled else signature(cls.__init__, drop_self=True)
    yield f"### `tmn.{name}{init}`\n"
    yield doc(cls) + "\n"
    rows: list[str] = []
    if dataclasses.is_dataclass(cls):
        rows += [f"- `{f.name}: {f.type}`" for f in dataclasses.fields(cls)]
    for attr, member in vars(cls).items():
        if attr.startswith("_"):
            continue
        text = doc(member).replace("\n", " ")
        if isinstance(member, (property, types.GetSetDescriptorType)) \
                or type(member).__name__ == "property":
            kind = stub.get(attr) or (f": {inspect.signature(member.fget).return_annotation}"
                                      if not compiled and member.fget else "")
            rows.append(f"- `{attr}{kind}` (property){' ' + text if text else ''}")
        elif callable(member):
            sig = stub.get(attr) or signature(member, drop_self=True)
            rows.append(f"- `{attr}{sig}`{' ' + text if text else ''}")
    if rows:
        yield "\n".join(rows) + "\n"


def python_reference() -> Iterator[str]:
    """Every name of ``tmn.__all__``: constants, functions, classes."""
    import tmn

    yield "## Python: the `tmn` package\n"
    yield (doc(tmn) + "\n").replace("``", "`")
    names = list(tmn.__all__)
    constants = [n for n in names if not callable(getattr(tmn, n))]
    functions = [n for n in names if inspect.isfunction(getattr(tmn, n))]
    classes = [n for n in names if isinstance(getattr(tmn, n), type)]
    yield "### Constants\n"
    yield "\n".join(f"- `tmn.{n} = {getattr(tmn, n)!r}`" for n in constants) + "\n"
    for n in functions:
        yield f"### `tmn.{n}{signature(getattr(tmn, n))}`\n"
        yield doc(getattr(tmn, n)) + "\n"
    for n in classes:
        yield from class_section(n, getattr(tmn, n))


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` once it has the parser."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def cli_parser(script: str) -> argparse.ArgumentParser:
    """The top-level parser of a console script: its ``main`` runs until it parses."""
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
                if e.name == script]

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab), \
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", grab):
        try:
            entry.load()([])
        except _Parsed as parsed:
            return parsed.parser
    raise RuntimeError(f"{script}: main() returned without parsing its arguments")


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and all its subcommands' parsers, depth first."""
    yield parser
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from parsers(sub)


def cli_reference() -> Iterator[str]:
    """``--help`` of every console script and of each of its subcommands."""
    yield "## Command line\n"
    yield ("Every program answers `--help` (and `--version`). The text below is their `--help`, "
           f"at {HELP_COLUMNS} columns.\n")
    for script in CLIS:
        yield f"### `{script}`\n"
        for p in parsers(cli_parser(script)):
            if p.prog != script:
                yield f"#### `{p.prog}`\n"
            yield "```text\n" + p.format_help().rstrip() + "\n```\n"


def render() -> str:
    """The whole page."""
    os.environ["COLUMNS"] = HELP_COLUMNS
    head = ("# API reference\n\n"
            "<!-- Generated by docs/gen_api.py from the installed code; do not edit by hand:\n"
            "     run `python docs/gen_api.py`. tests/integration/test_docs.py checks it. -->\n\n"
            f"Generated with Python {sys.version_info.major}.{sys.version_info.minor}. "
            "The Python package is the runtime (`pip install tmn`); `tmn-train` comes with "
            "`./training` and `tmn-bench`, `tmn-hub` with `./bench` "
            "([installation.md](installation.md)). Worked examples: "
            "[tutorial.md](tutorial.md) and the built-in model's "
            "[examples](../python/tmn/models/default/examples/).\n")
    return "\n".join([head, *python_reference(), *cli_reference()])


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/api.md, or with ``--check`` report whether it is stale."""
    p = argparse.ArgumentParser(description="Write docs/api.md from the installed code.")
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    args = p.parse_args(argv)
    page = render()
    if args.check:
        stale = not OUT.exists() or OUT.read_text() != page
        print(f"{OUT} is {'stale: run python docs/gen_api.py' if stale else 'up to date'}")
        return int(stale)
    OUT.write_text(page)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
