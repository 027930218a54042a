"""The typed stub python/tmn/_core.pyi names exactly what tmn._core exports."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import tmn
import tmn._core as core

STUB = Path(tmn.__file__).with_name("_core.pyi")
TREE = ast.parse(STUB.read_text(encoding="utf-8"))


def _members(node: ast.ClassDef) -> set[str]:
    members = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            members.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.add(item.target.id)
    return {m for m in members if not m.startswith("_")}


def stub_names() -> dict[str, set[str]]:
    """Public top-level names of the stub, each class with its public members
    (its stub base classes' included)."""
    classes = {n.name: n for n in TREE.body if isinstance(n, ast.ClassDef)}
    names: dict[str, set[str]] = {}
    for node in TREE.body:
        if isinstance(node, ast.ClassDef):
            members = _members(node)
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in classes:
                    members |= _members(classes[base.id])
            names[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = set()
    return {k: v for k, v in names.items() if not k.startswith("_")}


def stub_constants() -> dict[str, ast.expr]:
    """Top-level annotated constants of the stub: name -> annotation."""
    return {n.target.id: n.annotation for n in TREE.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


BUILTINS = {"int": int, "float": float, "str": str, "bool": bool, "tuple": tuple, "dict": dict}


def annotation_type(node: ast.expr) -> object:
    """A stub annotation of builtins (``tuple[str, ...]``, ``dict[int, str]``) as a type."""
    if isinstance(node, ast.Name):
        return BUILTINS[node.id]
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return Ellipsis
    assert isinstance(node, ast.Subscript), ast.unparse(node)
    origin = BUILTINS[node.value.id]  # type: ignore[attr-defined]
    parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return origin[tuple(annotation_type(a) for a in parts)]  # type: ignore[index]


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
            members = members | {"name", "value"}
        assert declared == members, f"{name}: stub {sorted(declared ^ members)} differ"


def _conforms(value: object, annotation: object) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None:
        return isinstance(value, annotation)  # type: ignore[arg-type]
    if not isinstance(value, origin):
        return False
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)  # type: ignore[attr-defined]
        return len(value) == len(args) and all(  # type: ignore[arg-type]
            _conforms(v, a) for v, a in zip(value, args))  # type: ignore[call-overload]
    if origin is dict:
        return all(_conforms(k, args[0]) and _conforms(v, args[1])
                   for k, v in value.items())  # type: ignore[attr-defined]
    return True


def test_stub_constants_have_the_declared_types() -> None:
    constants = stub_constants()
    assert constants, "the stub declares no constants"
    for name, annotation in constants.items():
        value = getattr(core, name)
        assert _conforms(value, annotation_type(annotation)), (name, ast.unparse(annotation),
                                                                value)
