"""A version of code taken from the code itself: :func:`code_fingerprint`.

Reuse caches (incremental normalisation, the keyword tokeniser's kept tokens, the stored text
keys, near_duplicates' candidates, the cluster summaries) are keyed on the code that made what
they keep, so an edit makes them stale without anyone bumping a version by hand.

What counts, walked recursively (each object once per call, cycles cut by name):

* functions: bytecode, names, constants (nested code objects included, frozensets sorted),
  defaults, closure cells, and the module-level globals their code names (constants, other
  functions and classes of this package, and the attributes named of this package's modules,
  e.g. ``names.normalise_artist``);
* classes of this package: their own members (methods, properties, static and class methods,
  class attributes, dataclass fields with their defaults); enums: their members' values;
* instances: dataclasses field by field, other objects of this package by their attributes;
* sets and dict keys sorted by their description, compiled patterns by pattern and flags,
  polars dtypes by ``repr`` (``List(Struct({...}))`` names its fields), numpy arrays by bytes.

Functions and classes from outside this package (and the modules of the functions, classes
and modules asked for) count by their qualified name only (their version is the environment's
business). Nothing depends on addresses or on the hash seed, so a
fingerprint is the same in every process of the same code and interpreter.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import logging
import re
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["code_fingerprint"]

#: Objects whose ``__module__`` starts with this are walked; others count by name.
_PACKAGE = __name__.split(".")[0]
#: Members every class has (or dataclasses generate) that say nothing about what the code does.
_CLASS_NOISE = frozenset({
    "__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__annotations__", "__slots__",
    "__dataclass_params__", "__match_args__", "__hash__", "__orig_bases__", "__parameters__",
    "__static_attributes__", "__firstlineno__", "__annotate__", "__annotate_func__",
})  # fmt: skip


def code_fingerprint(*objects: Any) -> str:
    """A 16-hex digest of ``objects`` (functions, classes, modules, constants) and of everything
    of this package they reach (see the module). Equal code and constants, equal digests."""
    walker = _Walker(roots=objects)
    digest = hashlib.sha256(f"python {sys.version_info[0]}.{sys.version_info[1]}".encode())
    for value in objects:
        digest.update(walker.describe(value).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def _module_of(value: Any) -> str | None:
    module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
    return module if isinstance(module, str) else None


def _name(value: Any) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', getattr(value, '__name__', '?'))}"


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class _Walker:
    """One fingerprint's walk: described functions, classes and modules are remembered (by id,
    the objects kept alive) as the digest of their description."""

    def __init__(self, roots: tuple[Any, ...] = ()) -> None:
        self._done: dict[int, tuple[Any, str]] = {}
        self._active: set[int] = set()
        self._roots = {id(root) for root in roots}
        # this package's code is walked, and that of the modules of the objects asked for
        code = [r for r in roots if isinstance(r, types.FunctionType | types.ModuleType | type)]
        self._walked = {_PACKAGE, *filter(None, map(_module_of, code))} - {"builtins"}

    def describe(self, value: Any) -> str:
        if value is None or isinstance(value, bool | int | float | complex | str | bytes):
            return f"{type(value).__name__}:{value!r}"
        if isinstance(value, enum.Enum):
            return f"enum({_name(type(value))}.{value.name}={self.describe(value.value)})"
        if isinstance(value, set | frozenset):
            return "set{" + ",".join(sorted(self.describe(v) for v in value)) + "}"
        if isinstance(value, Mapping):  # dicts, mappingproxy
            items = sorted(f"{self.describe(k)}:{self.describe(v)}" for k, v in value.items())
            return f"{type(value).__name__}{{" + ",".join(items) + "}"
        if isinstance(value, list | tuple):
            return f"{type(value).__name__}[" + ",".join(self.describe(v) for v in value) + "]"
        if isinstance(value, re.Pattern):
            return f"re({value.pattern!r},{value.flags})"
        if isinstance(value, types.CodeType):
            return self._code(value)
        if isinstance(value, property):
            return f"property({self.describe(value.fget)},{self.describe(value.fset)},{self.describe(value.fdel)})"
        if isinstance(value, staticmethod | classmethod):
            return f"{type(value).__name__}({self.describe(value.__func__)})"
        if isinstance(value, functools.partial):
            return f"partial({self.describe(value.func)},{self.describe(value.args)},{self.describe(value.keywords)})"
        if isinstance(value, types.FunctionType | types.ModuleType | type) or hasattr(value, "__wrapped__"):
            return self._remembered(value)
        return self._instance(value)

    def _own(self, value: Any) -> bool:
        module = _module_of(value)
        return module is not None and any(module == m or module.startswith(m + ".") for m in self._walked)

    def _remembered(self, value: Any) -> str:
        """Functions, classes and modules: walked once, a reference by name inside a cycle."""
        key = id(value)
        if key in self._done:
            return self._done[key][1]
        if key in self._active:
            return f"cycle({_name(value)})"
        self._active.add(key)
        try:
            text = self._walk(value)
        finally:
            self._active.discard(key)
        described = f"{type(value).__name__}({_name(value)}:{hashlib.sha256(text.encode()).hexdigest()[:24]})"
        self._done[key] = (value, described)
        return described

    def _walk(self, value: Any) -> str:
        if isinstance(value, types.ModuleType):
            # a module named by a function counts by name (the attributes its code reads are
            # walked by _function); a module asked for is walked whole
            return self._module(value) if id(value) in self._roots else value.__name__
        if not isinstance(value, types.FunctionType | type):  # functools.cache and the like
            return f"wrapped({_name(value)}:{self.describe(value.__wrapped__)})"
        if not self._own(value):
            return _name(value)  # other packages' and builtin functions and classes: by name
        if isinstance(value, type):
            return self._class(value)
        return self._function(value)

    def _function(self, function: types.FunctionType) -> str:
        code = function.__code__
        closure = [self.describe(cell.cell_contents) for cell in function.__closure__ or () if _filled(cell)]
        parts = [self._code(code), self.describe(function.__defaults__), self.describe(function.__kwdefaults__),
                 f"closure[{','.join(closure)}]"]
        names = _code_names(code)
        scope = function.__globals__
        for name in sorted(names & scope.keys()):
            target = scope[name]
            parts.append(f"{name}={self.describe(target)}")
            if isinstance(target, types.ModuleType) and self._own(target):
                # attributes the code may read off one of this package's modules
                parts.extend(f"{name}.{n}={self.describe(getattr(target, n))}" for n in sorted(names)
                             if n in vars(target) and not n.startswith("__"))
        return "fn(" + ";".join(parts) + ")"

    def _code(self, code: types.CodeType) -> str:
        consts = ",".join(self.describe(c) for c in code.co_consts)
        return (f"code({code.co_name}:{code.co_argcount}:{code.co_kwonlyargcount}:{code.co_flags}:{code.co_code.hex()}:"
                f"{code.co_names}:{code.co_varnames}:{code.co_freevars}:{code.co_cellvars}:[{consts}])")

    def _class(self, cls: type) -> str:
        parts = [f"bases[{','.join(_name(b) for b in cls.__bases__)}]"]
        if issubclass(cls, enum.Enum):
            parts.extend(f"{m.name}={self.describe(m.value)}" for m in cls)  # type: ignore[var-annotated]
        for name, member in sorted(vars(cls).items()):
            if name in _CLASS_NOISE or (issubclass(cls, enum.Enum) and (name.startswith("_") or isinstance(member, cls))):
                continue
            if name == "__dataclass_fields__":
                parts.extend(f"field {f.name}={self.describe(f.default)}|{self.describe(f.default_factory)}"
                             for f in member.values())
                continue
            if isinstance(member, types.FunctionType) and member.__code__.co_filename.startswith("<"):
                continue  # generated (dataclasses' __init__, __eq__, __repr__): the fields say it
            parts.append(f"{name}={self.describe(member)}")
        return "class(" + ";".join(parts) + ")"

    def _module(self, module: types.ModuleType) -> str:
        """A module of this package: its own functions and classes and its constants."""
        parts = []
        for name, member in sorted(vars(module).items()):
            if name.startswith("__") or isinstance(member, types.ModuleType):
                continue
            parts.append(f"{name}={self.describe(member)}")
        return "module(" + ";".join(parts) + ")"

    def _instance(self, value: Any) -> str:
        cls = type(value)
        if dataclasses.is_dataclass(value):
            fields = ",".join(f"{f.name}={self.describe(getattr(value, f.name))}" for f in dataclasses.fields(value))
            return f"{_name(cls)}({fields})"
        if cls.__module__.startswith("polars"):
            return f"polars:{value!r}"  # dtypes, expressions: the repr names fields and arguments
        if cls.__module__ == "numpy" or hasattr(value, "tobytes") and hasattr(value, "dtype"):
            return f"array({value.dtype}:{getattr(value, 'shape', '')}:{hashlib.sha256(value.tobytes()).hexdigest()})"
        if isinstance(value, logging.Logger):
            return f"logger({value.name})"
        if self._own(cls) and hasattr(value, "__dict__"):
            return f"{_name(cls)}({self.describe(vars(value))})"
        text = repr(value)
        # an address or a repr that is the default one says nothing stable: the type only (a
        # repr may also hold a set in hash order: the known containers are walked above)
        return _name(cls) if " at 0x" in text or text.startswith("<") else f"{_name(cls)}:{text}"


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True
