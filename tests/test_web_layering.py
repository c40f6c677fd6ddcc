"""The HTTP surface sits on top: only the daemon, the twistd plugin and the CLI import it.

Imports point down (surfaces -> services -> value layer and overlays -> rpc
-> wire -> ground). The modules are read with :mod:`ast`, not imported, so
an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import dhtkit

ROOT = Path(dhtkit.__file__).parent

#: Modules above the HTTP surface, allowed to import it.
ABOVE_WEB = {"dhtkit.tap", "dhtkit.daemon"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (``from a import b`` yields ``a`` and ``a.b``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from ("{}.{}".format(base, alias.name) for alias in node.names)


def modules() -> dict[str, set[str]]:
    return {module_name(path): set(imported(path)) for path in sorted(ROOT.rglob("*.py"))}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_cli(name: str) -> bool:
    """The ``dhtkit`` command: the ``dhtkit.cli`` package, or a flat ``*cli``/``demo`` module."""
    last = name.rpartition(".")[2]
    return within(name, "dhtkit.cli") or (
        name.count(".") == 1 and (last.endswith("cli") or last == "demo")
    )


def test_the_walk_sees_the_imports_it_checks() -> None:
    found = modules()
    assert "dhtkit.web.resource" in found
    assert "dhtkit.web.make_api_factory" in found["dhtkit.tap"]
    assert "dhtkit.web.guard" in found["dhtkit.tap"]
    assert any(is_cli(name) for name in found)


def test_nothing_below_the_web_imports_it() -> None:
    offenders = {
        name: sorted(target for target in targets if within(target, "dhtkit.web"))
        for name, targets in modules().items()
        if not (within(name, "dhtkit.web") or name in ABOVE_WEB or is_cli(name))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_web_imports_no_command_line_nor_the_daemon() -> None:
    offenders = {
        name: sorted(t for t in targets if is_cli(t) or t in ABOVE_WEB or t == "dhtkit.startup")
        for name, targets in modules().items()
        if within(name, "dhtkit.web")
    }
    assert {name: found for name, found in offenders.items() if found} == {}
