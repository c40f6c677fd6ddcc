"""A node's data directory: where it is by default, and how the command line finds the node.

The daemon keeps everything of one node in one directory: its key
(``identity.key``), its records (``dhtkit.sqlite``), its saved contacts, and
while it runs, the address of its HTTP API (``api.url``), the bearer token
that API asks for when it listens beyond this machine (``api.token``), and a
lock that keeps a second daemon off the same files. ``dhtkit put`` and its
siblings read ``api.url`` and ``api.token`` from the same directory, so
``--api`` is needed only to reach a node whose directory they cannot see.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

#: Overrides the per-user default directory.
DATA_DIR_ENV = "DHTKIT_DATA_DIR"
#: The base URL of the running daemon's HTTP API, one line.
API_FILE = "api.url"
#: The bearer token of an HTTP API that listens beyond loopback.
TOKEN_FILE = "api.token"  # noqa: S105 (a file name)
#: Held by the running daemon (see :class:`twisted.python.lockfile.FilesystemLock`).
LOCK_FILE = "dhtkit.lock"


def default_data_dir() -> Path:
    """``$DHTKIT_DATA_DIR``, or the platform's per-user data directory plus ``dhtkit``.

    Linux and other Unixes: ``$XDG_DATA_HOME/dhtkit`` (``~/.local/share/dhtkit``);
    macOS: ``~/Library/Application Support/dhtkit``; Windows:
    ``%LOCALAPPDATA%\\dhtkit``.
    """
    chosen = os.environ.get(DATA_DIR_ENV)
    if chosen:
        return Path(chosen)
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "dhtkit"


def _write_private(path: Path, text: str) -> None:
    # Created 0600 before a byte is written, and replaced atomically.
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _read_line(path: Path) -> str | None:
    try:
        text = path.read_text("utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text or None


def write_api_url(data_dir: str | os.PathLike[str], url: str) -> None:
    """Record where the running daemon's HTTP API listens."""
    _write_private(Path(data_dir) / API_FILE, url + "\n")


def read_api_url(data_dir: str | os.PathLike[str]) -> str | None:
    """The URL the daemon of ``data_dir`` recorded, or None if there is none.

    :raises OSError: the file exists but cannot be read.
    """
    return _read_line(Path(data_dir) / API_FILE)


def forget_api_url(data_dir: str | os.PathLike[str]) -> None:
    """Remove the recorded URL (the daemon stopped)."""
    try:
        (Path(data_dir) / API_FILE).unlink()
    except FileNotFoundError:
        pass


def load_or_create_token(data_dir: str | os.PathLike[str]) -> str:
    """The API token of ``data_dir``, created (mode 0600) on first use."""
    path = Path(data_dir) / TOKEN_FILE
    token = _read_line(path)
    if token is None:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
    return token


def read_token(data_dir: str | os.PathLike[str]) -> str | None:
    """The API token of ``data_dir``, or None if the daemon never needed one.

    :raises OSError: the file exists but cannot be read (e.g. another user's).
    """
    return _read_line(Path(data_dir) / TOKEN_FILE)
