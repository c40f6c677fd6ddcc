"""The package face: its public names, loaded only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dhtkit
from dhtkit._version import __version__


@pytest.mark.parametrize("name", dhtkit.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(dhtkit, name) is not None
    assert name in dir(dhtkit)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        dhtkit.no_such_name  # noqa: B018


def test_the_version_has_one_home() -> None:
    assert dhtkit.__version__ == __version__


def _loaded_after(statement: str) -> set[str]:
    code = "import sys\n{}\nprint('\\n'.join(sorted(sys.modules)))".format(statement)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name for name in out.stdout.split() if name.startswith("dhtkit")}


def test_the_http_client_does_not_load_the_overlays_or_the_storage() -> None:
    # Every `dhtkit` command imports the client; before the package face was
    # lazy, this loaded ~60 dhtkit modules (node, chord, gossip, sqlite...).
    loaded = _loaded_after("import dhtkit.client")
    heavy = {"dhtkit.node", "dhtkit.service", "dhtkit.storage", "dhtkit.kademlia", "dhtkit.chord"}
    assert not loaded & heavy, sorted(loaded)


def test_using_a_service_name_loads_it() -> None:
    loaded = _loaded_after("import dhtkit\ndhtkit.KademliaService")
    assert {"dhtkit.service", "dhtkit.node"} <= loaded


def test_the_web_face_resolves_its_names_and_refuses_others() -> None:
    import dhtkit.web

    for name in dhtkit.web.__all__:
        assert getattr(dhtkit.web, name) is not None
        assert name in dir(dhtkit.web)
    with pytest.raises(AttributeError, match=r"'dhtkit\.web' has no attribute 'no_such_name'"):
        dhtkit.web.no_such_name  # noqa: B018
