"""dhtkit keygen: a new identity in a key file, never over an existing one by accident."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dhtkit import cli
from dhtkit.identity import Identity


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_writes_a_loadable_identity_and_prints_its_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    status, out, err = run(capsys, "keygen", str(path))
    assert status == 0 and err == ""
    identity = Identity.from_file(path)
    assert out.splitlines() == [
        "node_id {}".format(identity.node_id.hex()),
        "public_key {}".format(identity.public_key.hex()),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refuses_to_overwrite_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    run(capsys, "keygen", str(path))
    kept = path.read_bytes()
    status, out, err = run(capsys, "keygen", str(path))
    assert status == 1 and out == ""
    assert err == "dhtkit: error: {} exists; give --force to replace it\n".format(path)
    assert path.read_bytes() == kept


def test_force_replaces_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    run(capsys, "keygen", str(path))
    old = Identity.from_file(path).node_id
    status, out, _ = run(capsys, "keygen", "--force", str(path))
    assert status == 0
    new = Identity.from_file(path).node_id
    assert new != old and new.hex() in out


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_force_never_replaces_what_is_not_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    # As root, `keygen --force /dev/null` once replaced the device with a key.
    path = tmp_path / "special"
    target = tmp_path / "target"
    target.write_bytes(b"kept")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(target)
    status, out, err = run(capsys, "keygen", "--force", str(path))
    assert status == 1 and out == ""
    assert err == "dhtkit: error: {} is not a regular file; give the path of a key file\n".format(
        path
    )
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    else:
        assert path.is_symlink() and target.read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["special", "target"]


@pytest.mark.parametrize("where", ["missing/node.key", "."])
def test_a_missing_directory_or_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    status, out, err = run(capsys, "keygen", str(tmp_path / where))
    assert status == 1 and out == ""
    assert err.startswith("dhtkit: error: ") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        status, out, err = run(capsys, "keygen", str(locked / "node.key"))
    finally:
        locked.chmod(0o700)
    assert status == 1 and out == ""
    assert err.startswith("dhtkit: error: cannot write {}".format(locked / "node.key"))
    assert "Permission denied" in err and "Traceback" not in err
    assert list(locked.iterdir()) == []


def test_a_failed_write_is_one_line_even_for_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The key is written beside its place first: a directory there stops it.
    (tmp_path / "node.key.tmp").mkdir()
    status, out, err = run(capsys, "keygen", str(tmp_path / "node.key"))
    assert status == 1 and out == ""
    assert err == "dhtkit: error: cannot write {}: Is a directory\n".format(tmp_path / "node.key")
    assert not (tmp_path / "node.key").exists()
