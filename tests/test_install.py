"""The package installed the way a user installs it: ``twistd dhtkit`` and ``dhtkit`` work.

The other tests import dhtkit from the source tree (its root on sys.path),
where twistd finds the plugin whatever the packaging says. These install a
copy of the source tree into a fresh virtual environment, offline (``pip
install --no-index --no-deps``), once as a wheel and once editable (``pip
install -e``), and run the daemon's and the command's ``--version`` and
``--help`` from another directory, with no PYTHONPATH.

The new environment gets its dependencies from the one running the tests:
a directory of links to everything installed here except dhtkit itself
(its package, its metadata, its editable hook and its plugin), named in a
``.pth`` file, so nothing is downloaded and no dhtkit but the one being
installed can answer.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What building the package reads (MANIFEST.in names more; absent is fine).
_SOURCES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "LICENSE")
#: What running the new environment's twistd means (it has no twistd script of its own).
_TWISTD = ("-c", "from twisted.scripts.twistd import run; run()")


def _unavailable() -> str | None:
    if not (ROOT / "setup.cfg").exists():
        return "no source tree beside the tests"
    spec = importlib.util.find_spec("setuptools")
    if spec is None:
        return "setuptools (the test extra) is not installed: the package cannot be built offline"
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return "setuptools {} builds wheels only with the wheel package".format(
            setuptools.__version__
        )
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    if pip.returncode != 0:
        return "pip is not installed"
    major, minor = (int(part) for part in pip.stdout.split()[1].split(".")[:2])
    if (major, minor) < (22, 3):
        return "pip {}.{} has no --python option".format(major, minor)
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


def _is_dhtkit(name: str) -> bool:
    # dhtkit's package and metadata, and an editable install's hook.
    name = name.lower()
    return name.startswith(("dhtkit", "__editable__.dhtkit", "__editable___dhtkit"))


def _link_dependencies(target: Path) -> None:
    """Link everything installed here into ``target``, but for any dhtkit."""
    target.mkdir()
    places = {Path(sysconfig.get_paths()[kind]) for kind in ("purelib", "platlib")}
    for place in sorted(places):
        for entry in place.iterdir():
            if _is_dhtkit(entry.name) or (target / entry.name).exists():
                continue
            if entry.name != "twisted":
                (target / entry.name).symlink_to(entry)
                continue
            # Twisted is linked piece by piece: its plugins directory may
            # hold an installed dhtkit's plugin.
            twisted = target / "twisted"
            twisted.mkdir()
            for piece in entry.iterdir():
                if piece.name != "plugins":
                    (twisted / piece.name).symlink_to(piece)
                    continue
                plugins = twisted / "plugins"
                plugins.mkdir()
                for plugin in piece.iterdir():
                    if not _is_dhtkit(plugin.name) and plugin.suffix == ".py":
                        (plugins / plugin.name).symlink_to(plugin)


def _copy_sources(target: Path) -> Path:
    # A copy: building writes build/ and *.egg-info beside the sources, and
    # an editable install points at them.
    target.mkdir()
    for name in _SOURCES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "dropin.cache", "*.egg-info")
    for package in ("dhtkit", "twisted"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    return target


def _environment(tmp_path: Path) -> Path:
    """A new virtual environment that sees this one's dependencies; its python."""
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dependencies = tmp_path / "dependencies"
    _link_dependencies(dependencies)
    (Path(site) / "dependencies.pth").write_text(str(dependencies) + "\n")
    return python


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300, check=False
    )


def _install(tmp_path: Path, *how: str) -> Path:
    python = _environment(tmp_path)
    sources = _copy_sources(tmp_path / "sources")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    pip += ["--no-index", "--no-deps", "--no-build-isolation", "--quiet"]
    done = _run([*pip, *how, str(sources)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def _check_installed(python: Path, elsewhere: Path) -> None:
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import dhtkit; print(dhtkit.__file__)"], elsewhere)
    assert where.returncode == 0, where.stderr
    assert not Path(where.stdout.strip()).is_relative_to(ROOT), where.stdout
    help_ = _run([str(python), *_TWISTD, "dhtkit", "--help"], elsewhere)
    assert help_.returncode == 0, help_.stdout + help_.stderr
    assert "--protocol" in help_.stdout
    version = _run([str(python), *_TWISTD, "dhtkit", "--version"], elsewhere)
    assert version.returncode == 0, version.stdout + version.stderr
    assert version.stdout.startswith("dhtkit "), version.stdout
    command = python.parent / ("dhtkit.exe" if sys.platform == "win32" else "dhtkit")
    cli = _run([str(command), "--version"], elsewhere)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("dhtkit "), cli.stdout


def test_an_installed_wheel_runs_the_daemon_and_the_command(tmp_path: Path) -> None:
    python = _install(tmp_path)
    _check_installed(python, tmp_path / "elsewhere")


def test_an_editable_install_runs_the_daemon_and_the_command(tmp_path: Path) -> None:
    python = _install(tmp_path, "--editable")
    _check_installed(python, tmp_path / "elsewhere")
    # Editable: the installed package is the source tree (its copy here).
    where = _run([str(python), "-c", "import dhtkit; print(dhtkit.__file__)"], tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "sources"), where.stdout
