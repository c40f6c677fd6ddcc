"""The release basics: licence, change log, source archive, and the oldest floors."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def tox_ini() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    return config


def requirements(text: str) -> list[Requirement]:
    return [Requirement(line) for line in text.splitlines() if line.strip()]


def test_the_licence_is_the_mit_licence_the_metadata_names() -> None:
    assert setup_cfg()["metadata"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} the dhtkit authors$", text, re.M)
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_change_log_has_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "Keep a Changelog" in text
    assert "\n## [Unreleased]\n" in text


def test_the_source_archive_carries_the_licence_and_the_change_log() -> None:
    included: set[str] = set()
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        words = line.split()
        if words and words[0] == "include":
            included.update(words[1:])
    assert {"LICENSE", "CHANGELOG.md"} <= included


def test_the_oldest_env_pins_every_floor_setup_cfg_names() -> None:
    options = setup_cfg()["options"]
    extras = setup_cfg()["options.extras_require"]
    wanted = requirements(options["install_requires"]) + requirements(extras["test"])
    floors = {}
    for requirement in wanted:
        (low,) = [s.version for s in requirement.specifier if s.operator == ">="]
        floors[requirement.name.lower()] = low
    pins = {}
    for requirement in requirements(tox_ini()["testenv:oldest"]["deps"]):
        (pin,) = [s.version for s in requirement.specifier if s.operator == "=="]
        pins[requirement.name.lower()] = pin
    assert pins == floors


def test_every_package_of_the_source_tree_is_installed() -> None:
    # setup.cfg lists the packages by hand (for twisted.plugins); a package
    # missing there works from the source tree and breaks an installed copy.
    listed = set(setup_cfg()["options"]["packages"].split())
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "dhtkit").rglob("__init__.py")
    }
    assert found <= listed, found - listed
