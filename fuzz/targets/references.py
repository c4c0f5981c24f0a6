"""References to user code in the form they are stored: `module:function` kernels and oracles,
and `--plugin FILE_OR_MODULE` plugins.

A reference is stored the same way however it was typed, so that `mykernels.py:f`,
`./mykernels.py:f` and `/home/me/mykernels.py:f` make one finding, and so that a stored
finding still resolves from another directory:

- a file path becomes the module name when the file is importable as that module without the
  current directory on the path (an installed package, PYTHONPATH), else its absolute path;
- a module name stays as it is (it names what the import system finds);
- anything else (a variant name such as "eager_lowp") is left alone.

Nothing here imports the referenced code.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["normal_plugin", "normal_reference"]


def _outside_cwd_path() -> list[str]:
    """sys.path without the entries that stand for the current directory."""
    cwd = os.path.realpath(os.getcwd())
    return [p for p in sys.path if p and os.path.realpath(p) != cwd]


def _find_spec(name: str, locations: list[str] | None) -> Any:
    """The spec the import system would find for `name` (its parent's search `locations`, or
    None for a top-level name) with the current directory left off sys.path; None if none.
    Imports nothing."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            if finder is importlib.machinery.PathFinder:
                spec = finder.find_spec(name, locations if locations is not None else _outside_cwd_path())
            else:
                spec = find(name, locations)
        except (ImportError, ValueError, OSError, AttributeError, TypeError):
            continue
        if spec is not None:
            return spec
    return None


def _finds_file(name: str, path: Path) -> bool:
    """True when importing `name` without the current directory on sys.path loads `path`."""
    parts = name.split(".")
    locations: list[str] | None = None
    spec = None
    for depth in range(len(parts)):
        if depth and not locations:
            return False
        spec = _find_spec(".".join(parts[: depth + 1]), locations)
        if spec is None:
            return False
        locations = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    if not isinstance(origin, str):
        return False
    try:
        return Path(origin).resolve() == path
    except OSError:
        return False


def _candidate_names(path: Path) -> list[str]:
    """Dotted names that may import `path`: first those of the modules already imported from
    it (the name the code is known by, which also covers packages mapped by an editable
    install), then one from each sys.path entry above it."""
    names = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and name != "__main__" and not name.startswith("kfuzz_plugin_"):
            try:
                if Path(file).resolve() == path:
                    names.append(name)
            except OSError:
                continue
    for entry in _outside_cwd_path():
        try:
            relative = path.relative_to(Path(entry).resolve())
        except (ValueError, OSError):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        if parts and all(p.isidentifier() for p in parts):
            names.append(".".join(parts))
    return names


def _module_name(path: Path) -> str | None:
    """The dotted name under which the import system, without the current directory on
    sys.path, finds exactly the file `path`; None when there is none."""
    for name in _candidate_names(path):
        if _finds_file(name, path):
            return name
    return None


def _normal_module(module: str) -> str:
    """A file path (ending in .py) in its stored form; a module name unchanged."""
    if not module.endswith(".py"):
        return module
    path = Path(module).expanduser()
    try:
        path = path.resolve()
    except OSError:
        return str(Path.cwd() / path)
    return _module_name(path) or str(path)


def normal_reference(ref: str) -> str:
    """The stored form of a kernel or oracle: `module:function` with the module part in its
    normal form (see the module docstring); a variant name unchanged.

    Args:
        ref: a variant name, "package.module:function" or "path/to/file.py:function".

    Returns:
        The reference to store and to fingerprint.
    """
    module, sep, attr = ref.rpartition(":")
    if not sep or not module:
        return ref
    return f"{_normal_module(module)}:{attr}"


def normal_plugin(spec: str) -> str:
    """The stored form of a `--plugin` value: a file path (ending in .py) as its importable
    module name or absolute path; a module name unchanged."""
    return _normal_module(spec)
