"""The ``dhtkit`` subcommands: each one's name, one-line summary and module.

The command's parser lists every subcommand with its summary from here, and
imports a subcommand's module only to parse that subcommand's arguments (see
:func:`dhtkit.cli.run.build_parser`): ``dhtkit get`` does not load the
node, the overlays or the simulator that ``demo`` and ``sim`` need. Each
module's ``add`` function adds the parsers of all its commands, with these
summaries.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """Where a subcommand lives, and what ``dhtkit --help`` says of it."""

    #: ``module:function``, the function that adds the module's subcommands.
    add: str
    summary: str


_API = "dhtkit.cli.api:add_commands"
_GOSSIP = "dhtkit.cli.gossip:add_commands"
_LISTEN = "dhtkit.cli.listen:add_commands"

#: Every subcommand, in the order ``dhtkit --help`` lists them.
COMMANDS: dict[str, Command] = {
    "put": Command(_API, "store VALUE under the key of NAME, last writer wins"),
    "get": Command(_API, "print the value stored under NAME (raw bytes)"),
    "put-signed": Command(_API, "store VALUE signed with the node's key, under SALT"),
    "get-signed": Command(_API, "print the newest signed value of a key and salt"),
    "delete": Command(_API, "delete the plain value this node put under NAME"),
    "delete-signed": Command(_API, "delete the node's signed value under SALT"),
    "put-encrypted": Command(
        _API, "store VALUE sealed for RECIPIENT, signed with the node's key, under SALT"
    ),
    "get-encrypted": Command(_API, "print the value a key sealed for this node under SALT, opened"),
    "status": Command(_API, "show the node's id, public key, protocol, address, contacts, values"),
    "contacts": Command(_API, "list the node's routing contacts: node id and address"),
    "publish": Command(_GOSSIP, "sign DATA as a gossip update of TOPIC and spread it"),
    "updates": Command(_GOSSIP, "list the live gossip updates of TOPIC the node holds"),
    "unpublish": Command(_GOSSIP, "delete a gossip update of TOPIC that this node published"),
    "listen": Command(_LISTEN, "print each version of NAME's value as it arrives"),
    "listen-signed": Command(_LISTEN, "print each version of a signed value as it arrives"),
    "keygen": Command(
        "dhtkit.cli.keygen:add_commands", "write a new node identity (Ed25519 key) to a file"
    ),
    "demo": Command(
        "dhtkit.cli.demo:add_commands",
        "run a small network of real nodes on 127.0.0.1 and pass values through it",
    ),
    "sim": Command("dhtkit.cli.sim:add_sim", "run a protocol on the virtual network"),
}


def summary(name: str) -> str:
    """The one-line summary of the subcommand ``name``."""
    return COMMANDS[name].summary
