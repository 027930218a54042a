"""The typed stub python/tmn/_core.pyi names exactly what tmn._core exports."""

from __future__ import annotations

import ast
from pathlib import Path

import tmn
import tmn._core as core

STUB = Path(tmn.__file__).with_name("_core.pyi")
ENUM_MEMBERS = {"name", "value"}


def stub_names() -> dict[str, set[str]]:
    """Top-level names of the stub, each with the public members of classes."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            names[node.name] = {m for m in members if not m.startswith("_")}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = set()  # a constant
    return names


def runtime_names() -> dict[str, set[str]]:
    """Top-level public names of the compiled module, with class members."""
    names: dict[str, set[str]] = {}
    for name in dir(core):
        if name.startswith("_"):
            continue
        obj = getattr(core, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            names[name] = stub_names().get(name, set())  # attributes live on instances
        elif isinstance(obj, type):
            names[name] = {m for m in vars(obj) if not m.startswith("_")}
        else:
            names[name] = set()
    return names


def test_stub_declares_every_runtime_name_and_nothing_else() -> None:
    assert set(stub_names()) == set(runtime_names())


def test_stub_classes_declare_every_runtime_member_and_nothing_else() -> None:
    stub, runtime = stub_names(), runtime_names()
    for name, members in runtime.items():
        declared = stub[name]
        if "value" in members and "name" in members:  # pybind11 enums
            members = members | ENUM_MEMBERS
        assert declared == members, f"{name}: stub {sorted(declared ^ members)} differ"
