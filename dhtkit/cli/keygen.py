"""``dhtkit keygen PATH``: a new node identity in a key file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dhtkit.cli.args import CommandFailed
from dhtkit.cli.commands import summary
from dhtkit.identity import Identity


def add_commands(commands: Any) -> None:
    """Add ``dhtkit keygen PATH``."""
    parser = commands.add_parser(
        "keygen",
        help=summary("keygen"),
        description="Write a new Ed25519 identity to PATH (mode 0600) and print its node id "
        "and public key. A node uses the identity.key of its data directory.",
    )
    parser.add_argument("path", metavar="PATH", help="the key file to write")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(run=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    """Run ``dhtkit keygen``."""
    path = Path(args.path)
    if path.is_dir():
        raise CommandFailed("{} is a directory; give the path of the key file".format(path))
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # --force replaces a key file, never a device, a pipe or a link (as
        # root, keygen --force /dev/null would put a key where /dev/null was).
        raise CommandFailed("{} is not a regular file; give the path of a key file".format(path))
    if path.exists() and not args.force:
        raise CommandFailed("{} exists; give --force to replace it".format(path))
    if not path.parent.is_dir():
        raise CommandFailed("no directory {} to write the key in".format(path.parent))
    identity = Identity.generate()
    try:
        identity.save(path)
    except OSError as e:
        raise CommandFailed("cannot write {}: {}".format(path, e.strerror or e)) from None
    print("node_id {}".format(identity.node_id.hex()))
    print("public_key {}".format(identity.public_key.hex()))
    return 0
