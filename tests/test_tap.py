"""twistd dhtkit: the options, the service tree, the plugin, and a daemon in this process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions

import dhtkit
from dhtkit.daemon import DaemonError, DataDirLock, HttpApiService
from dhtkit.datadir import API_FILE, LOCK_FILE, TOKEN_FILE, read_api_url
from dhtkit.gossip.service import GossipService
from dhtkit.identity import Identity
from dhtkit.overlays import OVERLAYS
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.service import ChordService, KademliaService, PastryService
from dhtkit.storage import Quota
from dhtkit.tap import OVERLAY_PARAMETERS, Options, makeService, needs_token, parse_address
from dhtkit.values import SignedValue, to_wire
from dhtkit.web.guard import (
    FD_RESERVE,
    GuardedFactory,
    HttpLimits,
    default_max_connections,
    fd_limit,
)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def refused(*argv: str) -> str:
    with pytest.raises(usage.UsageError) as caught:
        parse(*argv)
    return str(caught.value)


# -- options ------------------------------------------------------------------------


def test_defaults_name_a_kademlia_node_on_port_4000_with_its_api_on_4001(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHTKIT_DATA_DIR", str(tmp_path / "home"))
    options = parse()
    assert options["port"] == 4000
    assert options["interface"] == "127.0.0.1"
    assert options["protocol"] == "kademlia"
    assert options["data-dir"] == tmp_path / "home"
    assert options["http"] == "tcp:4001:interface=127.0.0.1"
    assert (options["k"], options["alpha"], options["replication"]) == (20, 3, 20)
    assert options["bootstrap"] == []
    assert not options["gossip"]


def test_parsing_creates_nothing_on_disk(tmp_path: Path) -> None:
    parse("--data-dir", str(tmp_path / "node"), "--http", "tcp:0:interface=0.0.0.0")
    assert "bad" in refused("--data-dir", str(tmp_path / "other"), "--port", "bad")
    assert list(tmp_path.iterdir()) == []


def test_bootstrap_is_repeatable_and_takes_ipv6_in_brackets_and_names(tmp_path: Path) -> None:
    options = parse(
        "-d", str(tmp_path), "--bootstrap", "10.0.0.1:4000", "-b", "[::1]:4002",
        "-b", "Router.Example.org.:4000",
    )  # fmt: skip
    assert options["bootstrap"] == [("10.0.0.1", 4000), ("::1", 4002), ("router.example.org", 4000)]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10.0.0.1", "HOST:PORT"),
        ("10.0.0.1:", "HOST:PORT"),
        (":4000", "HOST:PORT"),
        ("::1:4000", "brackets"),
        ("bad_name!:4000", "an IP address or a host name"),
        ("-dash.example.org:4000", "an IP address or a host name"),
        ("10.0.0.1:70000", "1-65535"),
        ("10.0.0.1:0", "1-65535"),
        ("example.org:0", "1-65535"),
    ],
)
def test_a_bad_bootstrap_address_says_what_to_write(text: str, says: str) -> None:
    with pytest.raises(usage.UsageError, match=says):
        parse_address(text)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "65536"], "--port 65536: must be from 0 to 65535"),
        (["--port", "four"], "--port four: not a whole number"),
        (["--interface", "localhost"], "--interface localhost: not an IP address"),
        (
            ["--protocol", "tapestry"],
            "--protocol tapestry: this version of dhtkit runs kademlia, chord or pastry",
        ),
        (["--protocol", "chord", "--alpha", "3"], "--alpha is a Kademlia parameter"),
        (["--successors", "8"], "--successors is a Chord parameter"),
        (["--puzzle-bits", "21"], "--puzzle-bits 21: must be from 0 to 20"),
        (["--protocol", "chord", "--puzzle-bits", "4"], "--puzzle-bits is a Kademlia parameter"),
        (["--k", "0"], "--k 0: must be from 1"),
        (["--k", "8", "--replication", "9"], "--replication 9: must be from 1 to 8"),
        (["--protocol", "chord", "--successors", "17"], "--successors 17"),
        (["--protocol", "chord", "--successors", "4", "-r", "5"], "--replication 5"),
        (["--leaf-set", "8"], "--leaf-set is a Pastry parameter"),
        (["--protocol", "pastry", "--leaf-set", "13"], "--leaf-set 13: must be from 1 to 12"),
        (["--protocol", "pastry", "--digit-bits", "3"], "--digit-bits 3: must be one of 1, 2, 4"),
        (["--protocol", "pastry", "--leaf-set", "2", "-r", "3"], "--replication 3"),
        (["--protocol", "pastry", "-r", "9"], "--replication 9: must be from 1 to 8"),
        (["--http", "carrier-pigeon:1"], "--http carrier-pigeon:1: not a Twisted endpoint"),
        (["--http", "tcp:4001:colour=blue"], "not a Twisted endpoint"),
        (["--port", "65535"], "no port + 1 for the HTTP API"),
        # The simulator's switch is not the daemon's: its nodes always check.
        (["--trust-sim"], "trust-sim"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_says_why(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    assert says in refused("--data-dir", str(tmp_path / "d"), *argv)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    assert "not a directory" in refused("--data-dir", str(tmp_path / "file"))


def test_http_none_disables_the_api_and_port_0_picks_any_port(tmp_path: Path) -> None:
    assert parse("-d", str(tmp_path), "--http", "none")["http"] is None
    assert parse("-d", str(tmp_path), "--port", "0")["http"] == "tcp:0:interface=127.0.0.1"
    assert parse("-d", str(tmp_path), "-p", "5000")["http"] == "tcp:5001:interface=127.0.0.1"


def test_chord_options(tmp_path: Path) -> None:
    options = parse("-d", str(tmp_path), "--protocol", "chord", "--successors", "8")
    assert (options["successors"], options["replication"]) == (8, 4)


def test_pastry_options_default_to_the_overlay_s_own(tmp_path: Path) -> None:
    options = parse("-d", str(tmp_path), "--protocol", "pastry")
    assert (options["leaf-set"], options["digit-bits"], options["replication"]) == (8, 4, 4)
    options = parse("-d", str(tmp_path), "--protocol", "pastry", "--leaf-set", "2")
    assert (options["leaf-set"], options["replication"]) == (2, 2)
    options = parse("-d", str(tmp_path), "--protocol", "pastry", "--digit-bits", "2", "-r", "6")
    assert (options["digit-bits"], options["replication"]) == (2, 6)


def test_every_overlay_option_is_in_the_help_with_its_default() -> None:
    text = str(Options())
    for entry in OVERLAYS.values():
        assert entry.name in text
        for option in entry.options:
            assert "--{}=".format(option.flag) in text
            assert OVERLAY_PARAMETERS[option.flag] == (entry.name,)
    assert "Pastry: leaf-set members on each side (l)" in " ".join(text.split())


@pytest.mark.parametrize(
    ("description", "protected"),
    [
        ("tcp:4001:interface=127.0.0.1", False),
        ("tcp:4001:interface=127.0.0.2", False),
        ("tcp6:4001:interface=\\:\\:1", False),
        ("unix:/run/dhtkit.sock", False),
        ("tcp:4001", True),
        ("tcp:4001:interface=0.0.0.0", True),
        ("tcp:4001:interface=10.77.0.1", True),
        ("tcp6:4001", True),
        ("ssl:4001:privateKey=key.pem", True),
    ],
)
def test_an_api_reachable_from_other_machines_needs_a_token(
    description: str, protected: bool
) -> None:
    assert needs_token(description) is protected


# -- the service tree ---------------------------------------------------------------


def test_the_service_tree_is_lock_node_gossip_api(tmp_path: Path) -> None:
    top = makeService(parse("-d", str(tmp_path / "d"), "--gossip", "-b", "127.0.0.1:4000"))
    assert isinstance(top, MultiService)
    kinds = [type(s) for s in top]
    assert kinds == [DataDirLock, KademliaService, GossipService, HttpApiService]
    node = list(top)[1]
    assert isinstance(node, KademliaService)
    assert node.bootstrap == [("127.0.0.1", 4000)]
    assert node.overlay_options == {"k": 20, "alpha": 3}
    assert not (tmp_path / "d").exists()


def test_puzzle_bits_reach_the_kademlia_overlay(tmp_path: Path) -> None:
    top = makeService(parse("-d", str(tmp_path / "d"), "--puzzle-bits", "12"))
    node = list(top)[1]
    assert isinstance(node, KademliaService)
    assert node.puzzle_bits == 12
    assert node.overlay_options == {"k": 20, "alpha": 3, "puzzle_bits": 12}


def test_pastry_options_reach_the_pastry_service(tmp_path: Path) -> None:
    argv = ["-d", str(tmp_path), "--protocol", "pastry", "--leaf-set", "6", "--digit-bits", "2"]
    top = makeService(parse(*argv, "-r", "3"))
    node = list(top)[1]
    assert isinstance(node, PastryService)
    assert node.overlay_options == {"leaf_size": 6, "digit_bits": 2, "k": 3}


def test_chord_without_api(tmp_path: Path) -> None:
    top = makeService(parse("-d", str(tmp_path), "--protocol", "chord", "--http", "none"))
    assert [type(s) for s in top] == [DataDirLock, ChordService]
    node = list(top)[1]
    assert isinstance(node, ChordService)
    assert node.overlay_options == {"successors": 16, "k": 4}


def test_http_limits_have_defaults_below_the_fd_limit(tmp_path: Path) -> None:
    limits = parse("-d", str(tmp_path))["http-limits"]
    assert limits == HttpLimits(10.0, 32, default_max_connections())
    assert limits.max_connections <= fd_limit() - FD_RESERVE
    given = parse(
        "-d",
        str(tmp_path),
        "--http-timeout",
        "2.5",
        "--http-max-per-source",
        "4",
        "--http-max-connections",
        "50",
    )["http-limits"]
    assert given == HttpLimits(2.5, 4, 50)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--http-timeout", "0"], "--http-timeout 0: give a number of seconds above 0"),
        (["--http-timeout", "nan"], "--http-timeout nan: give a number of seconds"),
        (["--http-timeout", "soon"], "--http-timeout soon: give a number of seconds"),
        (["--http-max-per-source", "0"], "--http-max-per-source 0: must be from 1 to"),
        (["--http-max-per-source", "x"], "--http-max-per-source x: not a whole number"),
        (["--http-max-connections", "0"], "--http-max-connections 0: must be from 1 to"),
        (
            ["--http-max-connections", str(10**6 + fd_limit())],
            "--http-max-connections {}: must be from 1 to {}".format(
                10**6 + fd_limit(), fd_limit() - FD_RESERVE
            ),
        ),
        (
            ["--http-max-connections", "5", "--http-max-per-source", "6"],
            "--http-max-per-source 6: must be from 1 to 5",
        ),
    ],
)
def test_bad_http_limits_are_refused_with_a_sentence(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    assert says in refused("-d", str(tmp_path), *argv)


def test_the_daemon_serves_its_api_with_the_limits(tmp_path: Path) -> None:
    top = makeService(
        parse("-d", str(tmp_path), "--http-max-per-source", "3", "--http-timeout", "7"), reactor
    )
    api = list(top)[-1]
    assert isinstance(api, HttpApiService)
    factory = api.make_site()
    assert isinstance(factory, GuardedFactory)
    assert factory.limits.max_per_source == 3
    assert factory.limits.request_timeout == 7


def test_the_plugin_is_found_by_twisted() -> None:
    makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "dhtkit"]
    assert len(makers) == 1
    assert makers[0].options is Options
    assert makers[0].makeService is makeService


# -- a daemon in this process ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_daemon_records_its_api_url_and_holds_its_directory(tmp_path: Path) -> None:
    import treq

    data_dir = tmp_path / "node"
    top = makeService(parse("-d", str(data_dir), "-p", "0"), reactor)
    top.startService()
    try:
        url = read_api_url(data_dir)
        assert url is not None and url.startswith("http://127.0.0.1:")
        response = await treq.get(url + "/v1/status")
        assert response.code == 200
        status = await response.json()
        assert status["protocol"] == "kademlia"
        assert status["node_id"] == list(top)[1].identity.node_id.hex()
        assert (data_dir / LOCK_FILE).is_symlink()
        assert not (data_dir / TOKEN_FILE).exists()  # loopback: no token
        second = makeService(parse("-d", str(data_dir), "-p", "0"), reactor)
        with pytest.raises(DaemonError, match=r"holds .* for another dhtkit daemon"):
            second.startService()
    finally:
        await top.stopService()
    assert not (data_dir / API_FILE).exists()
    assert not os.path.lexists(data_dir / LOCK_FILE)
    # A second start reuses the key and the store.
    again = makeService(parse("-d", str(data_dir), "-p", "0"), reactor)
    again.startService()
    try:
        assert list(again)[1].identity.node_id.hex() == status["node_id"]
    finally:
        await again.stopService()


@pytest_twisted.ensureDeferred
async def test_an_api_on_every_interface_asks_for_the_token(tmp_path: Path) -> None:
    import treq

    data_dir = tmp_path / "node"
    top = makeService(parse("-d", str(data_dir), "-p", "0", "--http", "tcp:0"), reactor)
    top.startService()
    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
        assert (data_dir / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
        url = read_api_url(data_dir)
        assert url is not None
        bare = await treq.get(url + "/v1/status")
        assert bare.code == 401
        await bare.content()
        with_token = await treq.get(
            url + "/v1/status", headers={"Authorization": "Bearer " + token}
        )
        assert with_token.code == 200
        await with_token.content()
    finally:
        await top.stopService()


@pytest_twisted.ensureDeferred
async def test_a_taken_http_port_stops_the_start(tmp_path: Path) -> None:
    blocker = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    endpoint = "tcp:{}:interface=127.0.0.1".format(blocker.getHost().port)
    top = makeService(parse("-d", str(tmp_path), "-p", "0", "--http", endpoint), reactor)
    try:
        with pytest.raises(CannotListenError):
            top.startService()
    finally:
        await blocker.stopListening()
        for child in reversed(list(top)):
            if child.running:
                await defer.maybeDeferred(child.stopService)


@pytest_twisted.ensureDeferred
async def test_a_url_left_by_a_killed_daemon_is_forgotten_at_the_next_start(
    tmp_path: Path,
) -> None:
    tmp_path.joinpath(API_FILE).write_text("http://127.0.0.1:9/\n")
    top = makeService(parse("-d", str(tmp_path), "-p", "0", "--http", "none"), reactor)
    top.startService()
    try:
        assert read_api_url(tmp_path) is None
    finally:
        await top.stopService()


# -- storage quotas -----------------------------------------------------------------


def test_store_and_network_quotas_default_and_take_sizes(tmp_path: Path) -> None:
    assert parse("-d", str(tmp_path))["quota"] == Quota()
    options = parse(
        "-d",
        str(tmp_path),
        "--store-max-bytes",
        "8M",
        "--store-max-records",
        "5000",
        "--quota-per-network",
        "256k",
        "--quota-records-per-network",
        "300",
    )
    assert options["quota"] == Quota(
        max_records=5000,
        max_bytes=8 << 20,
        max_records_per_publisher=300,
        max_bytes_per_publisher=256 << 10,
    )
    top = makeService(options)
    node = list(top)[1]
    assert isinstance(node, KademliaService)
    assert node.quota == options["quota"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--store-max-bytes", "lots"], "--store-max-bytes lots: not a size in bytes"),
        (["--store-max-bytes", "12"], "--store-max-bytes 12: must be from 1024"),
        (["--quota-per-network", "-5"], "--quota-per-network -5: not a size in bytes"),
        (["--quota-per-network", "\u00b2k"], "--quota-per-network \u00b2k: not a size in bytes"),
        (["--quota-per-network", "0"], "--quota-per-network 0: must be from 1"),
        (["--store-max-bytes", "9" * 5000], "--store-max-bytes 99999999999999999999...:"),
        (["--store-max-records", "0"], "--store-max-records 0: must be from 1"),
        (
            ["--store-max-bytes", "1M", "--quota-per-network", "2M"],
            "one network's share must fit in the store",
        ),
        (
            ["--store-max-records", "10", "--quota-records-per-network", "11"],
            "one network's share must fit in the store",
        ),
    ],
)
def test_a_bad_quota_is_a_usage_error_that_says_why(argv: list[str], says: str) -> None:
    assert says in refused(*argv)


@pytest_twisted.ensureDeferred
async def test_the_daemon_bounds_what_one_network_stores_whatever_keys_it_signs_with(
    tmp_path: Path,
) -> None:
    top = makeService(
        parse(
            "-d",
            str(tmp_path / "node"),
            "-p",
            "0",
            "--http",
            "none",
            "--quota-per-network",
            "4k",
            "--store-max-bytes",
            "64k",
        ),
        reactor,
    )
    top.startService()
    attacker = RPCProtocol(Identity(b"\x09" * 32), reactor, timeout=2.0)
    port = reactor.listenUDP(0, attacker, interface="127.0.0.1")
    try:
        node = list(top)[1]
        assert isinstance(node, KademliaService)
        assert node.node.store.quota.max_bytes_per_publisher == 4096
        target = node.node.rpc.contact
        assert target is not None
        refusals = []
        for n in range(10):  # ten keys, 900 bytes each: twice the share
            record = SignedValue.create(Identity(bytes([n + 1]) * 32), b"x" * 900, 1)
            try:
                await attacker.call_contact(target, "store", [to_wire(record), 60, None, False])
            except RemoteError as e:
                refusals.append(e.code)
        assert refusals and set(refusals) == {"over_quota"}
        assert node.node.store.usage()[1] <= 4096
    finally:
        await port.stopListening()
        await top.stopService()


# -- --version --------------------------------------------------------------------------


def test_version_prints_dhtkit_s_version_and_exits_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        Options().parseOptions(["--version"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "dhtkit {}".format(dhtkit.__version__)


def test_twistd_dhtkit_version_is_dhtkit_s_and_twistd_version_is_twistd_s(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        ServerOptions().parseOptions(["dhtkit", "--version"])
    assert exited.value.code in (0, None)
    assert capsys.readouterr().out.startswith("dhtkit {}\n".format(dhtkit.__version__))
    # twistd's own --version, before the subcommand, is left alone.
    with pytest.raises(SystemExit):
        ServerOptions().parseOptions(["--version"])
    assert capsys.readouterr().out.startswith("twistd ")
