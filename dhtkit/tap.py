"""``twistd dhtkit``: the daemon's options and its service tree.

``twistd -n dhtkit --port 4000`` runs one node: on a first start it creates
the data directory, the node's key and its SQLite store, and a second start
reuses them. The node's HTTP API listens on 127.0.0.1 at the UDP port + 1
unless ``--http`` says otherwise.

Every option is checked in :meth:`Options.postOptions`, before anything is
created on disk; a bad one is a :class:`~twisted.python.usage.UsageError`
whose message says what is wrong.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.python import usage

from dhtkit import startup
from dhtkit._version import __version__
from dhtkit.bootstrap import parse_bootstrap
from dhtkit.contact import Address
from dhtkit.daemon import DataDirLock, HttpApiService
from dhtkit.datadir import default_data_dir, load_or_create_token
from dhtkit.gossip.service import GossipService
from dhtkit.overlays import OVERLAYS, OverlayEntry, protocols
from dhtkit.service import OverlayService
from dhtkit.storage import Quota
from dhtkit.web.guard import FD_RESERVE, HttpLimits, default_max_connections, fd_limit
from twisted import copyright

#: ``--protocol`` values this version runs, and their services (from :mod:`dhtkit.overlays`).
PROTOCOLS: dict[str, type[OverlayService]] = protocols()


def _overlay_parameters() -> dict[str, tuple[str, ...]]:
    used: dict[str, tuple[str, ...]] = {}
    for entry in OVERLAYS.values():
        for option in entry.options:
            used[option.flag] = (*used.get(option.flag, ()), entry.name)
    return used


#: The overlay parameters, and the protocols that use them.
OVERLAY_PARAMETERS = _overlay_parameters()


def _one_of(words: list[str]) -> str:
    # "a, b or c"
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _overlay_help() -> list[list[Any]]:
    # Each overlay's options, as usage.Options lists them, with the default
    # the overlay class itself states.
    out: list[list[Any]] = []
    for entry in OVERLAYS.values():
        defaults = entry.defaults()
        for option in entry.options:
            text = "{}: {} [default: {}]".format(entry.title, option.help, defaults[option.keyword])
            out.append([option.flag, option.short, None, text])
    return out


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (a host name, an IP address, IPv6 as ``[::1]:4000``) as a pair.

    :raises usage.UsageError: with what to write instead.
    """
    try:
        return parse_bootstrap(text)
    except ValueError as e:
        raise usage.UsageError("--bootstrap {}: {}".format(text, e)) from None


def _whole_number(name: str, text: Any, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise usage.UsageError("--{} {}: not a whole number".format(name, text)) from None
    if not low <= value <= high:
        raise usage.UsageError("--{} {}: must be from {} to {}".format(name, text, low, high))
    return value


#: The store limits a daemon runs with unless told otherwise.
_DEFAULT_QUOTA = Quota()
#: Suffixes a size option takes, and their multipliers.
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
#: The largest store the size options describe: 1 TiB.
_MAX_STORE_BYTES = 1 << 40
_MAX_STORE_RECORDS = 1 << 32


def _size(name: str, text: Any, low: int, high: int) -> int:
    """A number of bytes, optionally with a k, M or G suffix (powers of 1024)."""
    spelled = str(text).strip()
    shown = spelled if len(spelled) <= 24 else spelled[:20] + "..."
    unit = spelled[-1:].lower() if spelled[-1:].isalpha() else ""
    digits = spelled[: len(spelled) - len(unit)]
    if unit not in _SIZE_UNITS or not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise usage.UsageError(
            "--{} {}: not a size in bytes (a whole number, optionally with k, M or G)".format(
                name, shown
            )
        )
    value = int(digits) * _SIZE_UNITS[unit]
    if not low <= value <= high:
        raise usage.UsageError(
            "--{} {}: must be from {} to {} bytes".format(name, shown, low, high)
        )
    return value


def _split_endpoint(description: str) -> tuple[str, dict[str, str]]:
    # The kind and keyword arguments of an endpoint description; a
    # backslash escapes a colon (as in tcp6:4001:interface=\:\:1).
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    keywords = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    return parts[0], keywords


def needs_token(description: str) -> bool:
    """Whether an HTTP endpoint can be reached from other machines.

    Loopback TCP and UNIX sockets cannot; every other endpoint asks for the
    bearer token in the data directory.
    """
    kind, keywords = _split_endpoint(description)
    if kind == "unix":
        return False
    if kind not in ("tcp", "tcp6", "ssl"):
        return True
    interface = keywords.get("interface", "::" if kind == "tcp6" else "0.0.0.0")  # noqa: S104
    try:
        return not ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return True


class Options(usage.Options):
    """``twistd dhtkit`` options."""

    synopsis = "[options]"
    longdesc = (
        "Run a dhtkit node: a {} DHT node on UDP, with its key, its records "
        "and its contacts in a data directory, and its HTTP API (used by the dhtkit "
        "command) on 127.0.0.1 at the UDP port + 1."
    ).format(_one_of([e.title for e in OVERLAYS.values()]))
    optFlags = [  # noqa: N815 (Twisted's name)
        ["gossip", "g", "also spread gossip updates, with the overlay's contacts as partners"],
    ]
    optParameters = [  # noqa: N815 (Twisted's name)
        ["port", "p", "4000", "the node's UDP port (0: any free port)"],
        ["interface", "i", "127.0.0.1", "the IP address to listen on (0.0.0.0 or :: for all)"],
        ["protocol", None, next(iter(OVERLAYS)), "the overlay: {}".format(_one_of(list(OVERLAYS)))],
        ["data-dir", "d", None, "the node's directory [default: {}]".format(default_data_dir())],
        [
            "http",
            None,
            None,
            "the HTTP API's Twisted endpoint description, or none "
            "[default: tcp:<port + 1>:interface=127.0.0.1]",
        ],
        *_overlay_help(),
        [
            "replication",
            "r",
            None,
            "nodes each value is stored on [default: {}]".format(
                ", ".join(e.replication.help for e in OVERLAYS.values())
            ),
        ],
        [
            "store-max-bytes",
            None,
            str(_DEFAULT_QUOTA.max_bytes),
            "the most bytes of values the node stores (k, M, G suffixes allowed)",
        ],
        [
            "store-max-records",
            None,
            str(_DEFAULT_QUOTA.max_records),
            "the most records the node stores",
        ],
        [
            "quota-per-network",
            None,
            str(_DEFAULT_QUOTA.max_bytes_per_publisher),
            "the most bytes one source network (IPv4 /24, IPv6 /64; one address on a "
            "private IPv4 range; one port on loopback) may store here, whatever keys it uses",
        ],
        [
            "quota-records-per-network",
            None,
            str(_DEFAULT_QUOTA.max_records_per_publisher),
            "the most records one source network may store here",
        ],
        [
            "http-timeout",
            None,
            "10",
            "seconds an HTTP connection has to send a whole request (also the idle time "
            "allowed between requests)",
        ],
        [
            "http-max-per-source",
            None,
            "32",
            "HTTP connections open at once from one client address (an IPv6 /64)",
        ],
        [
            "http-max-connections",
            None,
            None,
            "HTTP connections open at once in all "
            "[default: the open-file limit less {}, at most 1024]".format(FD_RESERVE),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["bootstrap"] = []

    def opt_version(self) -> None:
        """Print dhtkit's version (and the Twisted it runs on) and exit."""
        print("dhtkit {}".format(__version__))
        print("Twisted {}".format(copyright.version))
        sys.exit(0)

    def opt_bootstrap(self, value: str) -> None:
        """a node to join through, HOST:PORT (a name or an IP; IPv6 as [::1]:4000); repeatable"""
        self["bootstrap"].append(parse_address(value))

    opt_b = opt_bootstrap

    def postOptions(self) -> None:  # noqa: N802 (Twisted's name)
        """Check every option; nothing is created until they all make sense."""
        self["port"] = _whole_number("port", self["port"], 0, 65535)
        try:
            self["interface"] = str(ipaddress.ip_address(self["interface"]))
        except ValueError:
            raise usage.UsageError(
                "--interface {}: not an IP address".format(self["interface"])
            ) from None
        protocol = self["protocol"]
        if protocol not in PROTOCOLS:
            raise usage.UsageError(
                "--protocol {}: this version of dhtkit runs {}".format(
                    protocol, _one_of(list(PROTOCOLS))
                )
            )
        for name, users in OVERLAY_PARAMETERS.items():
            if self[name] is not None and protocol not in users:
                raise usage.UsageError(
                    "--{} is a {} parameter; --protocol {} does not use it".format(
                        name, " and ".join(p.capitalize() for p in users), protocol
                    )
                )
        self._check_overlay(protocol)
        self["quota"] = self._check_quota()
        data_dir = Path(self["data-dir"]) if self["data-dir"] else default_data_dir()
        if data_dir.exists() and not data_dir.is_dir():
            raise usage.UsageError("--data-dir {}: not a directory".format(data_dir))
        self["data-dir"] = data_dir
        self["http"] = self._check_http(self["http"])
        self["http-limits"] = self._check_http_limits()

    def _check_http_limits(self) -> HttpLimits:
        text = self["http-timeout"]
        try:
            timeout = float(text)
        except (TypeError, ValueError):
            timeout = math.nan
        if not (math.isfinite(timeout) and 0 < timeout <= 3600):
            raise usage.UsageError(
                "--http-timeout {}: give a number of seconds above 0 and at most 3600".format(text)
            )
        ceiling = fd_limit() - FD_RESERVE
        if ceiling < 1:
            raise usage.UsageError(
                "the open-file limit ({}) leaves no room for HTTP connections: "
                "raise it (ulimit -n)".format(fd_limit())
            )
        if self["http-max-connections"] is None:
            total = default_max_connections()
        else:
            total = _whole_number("http-max-connections", self["http-max-connections"], 1, ceiling)
        per_source = _whole_number(
            "http-max-per-source", self["http-max-per-source"], 1, max(total, 1)
        )
        return HttpLimits(timeout, per_source, total)

    def _check_overlay(self, protocol: str) -> None:
        entry = OVERLAYS[protocol]
        values = entry.defaults()
        for option in entry.options:
            given = self[option.flag]
            if given is not None:
                value = _whole_number(option.flag, given, option.low, option.high)
                if option.choices and value not in option.choices:
                    raise usage.UsageError(
                        "--{} {}: must be one of {}".format(
                            option.flag, given, ", ".join(map(str, option.choices))
                        )
                    )
                values[option.keyword] = value
            self[option.flag] = values[option.keyword]
        replication = entry.replication
        given = self["replication"]
        self["replication"] = _whole_number(
            "replication",
            replication.default(values) if given is None else given,
            1,
            replication.most(values),
        )

    def _check_quota(self) -> Quota:
        total = _size("store-max-bytes", self["store-max-bytes"], 1024, _MAX_STORE_BYTES)
        records = _whole_number(
            "store-max-records", self["store-max-records"], 1, _MAX_STORE_RECORDS
        )
        share = _size("quota-per-network", self["quota-per-network"], 1, _MAX_STORE_BYTES)
        share_records = _whole_number(
            "quota-records-per-network",
            self["quota-records-per-network"],
            1,
            _MAX_STORE_RECORDS,
        )
        if share > total:
            raise usage.UsageError(
                "--quota-per-network {} is more than --store-max-bytes {}: one network's "
                "share must fit in the store".format(share, total)
            )
        if share_records > records:
            raise usage.UsageError(
                "--quota-records-per-network {} is more than --store-max-records {}: one "
                "network's share must fit in the store".format(share_records, records)
            )
        return Quota(
            max_records=records,
            max_bytes=total,
            max_records_per_publisher=share_records,
            max_bytes_per_publisher=share,
        )

    def _check_http(self, description: str | None) -> str | None:
        if description is None:
            if self["port"] == 0:
                return "tcp:0:interface=127.0.0.1"
            if self["port"] == 65535:
                raise usage.UsageError(
                    "--port 65535 leaves no port + 1 for the HTTP API: give --http"
                )
            return "tcp:{}:interface=127.0.0.1".format(self["port"] + 1)
        if description.lower() == "none":
            return None
        try:
            # Parsed only: nothing listens until the service starts.
            endpoints.serverFromString(object(), description)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise usage.UsageError(
                "--http {}: not a Twisted endpoint description ({})".format(description, e)
            ) from None
        return description


def overlay_service(config: Options, reactor: Any = None) -> OverlayService:
    """The node's service, as the options describe it."""
    entry: OverlayEntry = OVERLAYS[config["protocol"]]
    values = {option.keyword: config[option.flag] for option in entry.options}
    options = entry.service_options(values, config["replication"])
    return PROTOCOLS[config["protocol"]](
        config["port"],
        config["interface"],
        config["data-dir"],
        config["bootstrap"],
        reactor=reactor,
        quota=config["quota"],
        **options,
    )


def makeService(config: Options, reactor: Any = None) -> MultiService:  # noqa: N802 (Twisted's name)
    """The daemon: the data directory's lock, the node, its gossip and its HTTP API.

    Under twistd (whose options are the parent of ``config``), it first
    checks what would stop the start, and exits with one line naming it
    (:mod:`dhtkit.startup`), before twistd forks or starts logging.
    """
    if reactor is None:
        from twisted.internet import reactor
    top: MultiService
    twistd = getattr(config, "parent", None)
    if twistd is not None:
        startup.exit_unless_startable(
            config["data-dir"], config["interface"], config["port"], config["http"]
        )
        top = startup.StartupGuard(daemon=not twistd.get("nodaemon", True))
    else:
        top = MultiService()  # type: ignore[no-untyped-call]
    DataDirLock(config["data-dir"]).setServiceParent(top)  # type: ignore[no-untyped-call]
    node = overlay_service(config, reactor)
    node.setServiceParent(top)  # type: ignore[no-untyped-call]
    gossip = None
    if config["gossip"]:
        gossip = GossipService.riding_on(node, lambda: node.overlay.contacts())
        gossip.setServiceParent(top)  # type: ignore[no-untyped-call]
    description = config["http"]
    if description is not None:
        from dhtkit.web import make_api_factory

        protected = needs_token(description)

        def site() -> Factory[Any]:
            # Called at start, once the data directory exists and is ours.
            token = load_or_create_token(config["data-dir"]) if protected else None
            return make_api_factory(
                node, token=token, gossip=gossip, limits=config["http-limits"], clock=reactor
            )

        endpoint = endpoints.serverFromString(reactor, description)  # type: ignore[no-untyped-call]
        IService(HttpApiService(endpoint, site, config["data-dir"])).setServiceParent(top)  # type: ignore[no-untyped-call]
    return top
