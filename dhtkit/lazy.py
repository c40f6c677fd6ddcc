"""Names a package exports but imports only when first used (PEP 562).

A package face lists where each public name is defined and hands its
``__getattr__`` and ``__dir__`` to :func:`lazy_names`, so that importing the
package (or one small module of it) does not load every module behind it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, whose
    public names are the keys of ``where`` (each mapped to the module that
    defines it). A name is imported on first use and then kept in the
    package's namespace."""
    namespace = sys.modules[package].__dict__

    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError("module {!r} has no attribute {!r}".format(package, name))
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # looked up once
        return value

    def names() -> list[str]:
        return sorted({*namespace, *where})

    return attribute, names
