"""The contacts an overlay saves in its data directory, to rejoin after a restart.

A node that restarts should not depend on its bootstrap list: it rejoins
through the contacts it knew. They are written atomically (a temporary file,
fsync, rename), so a crash leaves the old list or the new one, never half.
"""

from __future__ import annotations

import os
from pathlib import Path

from dhtkit.contact import Contact
from dhtkit.wire import WireError, dump_contacts, load_contacts

#: The file in the data directory that holds the saved contacts.
CONTACTS_FILE = "contacts.cbor"


class ContactFileError(Exception):
    """The saved contacts cannot be read (the file is damaged or not ours)."""


def save_contacts(path: str | os.PathLike[str], contacts: list[Contact]) -> None:
    """Replace the list saved at ``path`` with ``contacts``.

    :raises OSError: the directory cannot be written.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(dump_contacts(contacts))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def read_contacts(path: str | os.PathLike[str]) -> list[Contact]:
    """The contacts saved at ``path``; an empty list if there is no file.

    :raises ContactFileError: the file exists but is not a saved contact list.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ContactFileError("{} cannot be read: {}".format(path, e)) from None
    try:
        return load_contacts(data)
    except WireError as e:
        raise ContactFileError("{} is not a dhtkit contact list: {}".format(path, e)) from None
