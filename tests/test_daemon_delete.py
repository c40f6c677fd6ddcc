"""Deletes and encrypted values through three real ``twistd -n dhtkit`` daemons."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from dhtkit.datadir import API_FILE, read_api_url
from dhtkit.identity import Identity
from dhtkit.nodesocket import IDENTITY_FILE
from dhtkit.service import STORE_FILE
from tests.daemons import Daemon, dhtkit_command, free_udp_port_with_tcp_after
from tests.test_daemon import daemons, node_daemon, wait_for_contacts

__all__ = ["daemons"]  # the fixture, used by name


def start_three(tmp_path: Path, daemons: list[Daemon]) -> list[Path]:
    ports: list[int] = []
    while len(ports) < 3:
        port = free_udp_port_with_tcp_after()
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    for name, port in zip("abc", ports, strict=True):
        daemon = node_daemon(tmp_path, name, port, *([] if name == "a" else [ports[0]]))
        daemons.append(daemon)
        daemon.start()
        daemon.wait_for(daemon.workdir / "data" / API_FILE)
    for daemon in daemons:
        wait_for_contacts(daemon, 2)
    return [daemon.workdir / "data" for daemon in daemons]


def command(data: Path, *args: str) -> tuple[int, bytes, str]:
    done = dhtkit_command("--data-dir", str(data), *args)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return done.returncode, done.stdout, done.stderr.decode()


def http_status(data: Path, path: str) -> tuple[int, dict[str, object]]:
    url = read_api_url(data)
    assert url is not None
    try:
        with urllib.request.urlopen(url + path, timeout=30) as answer:
            return answer.status, {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_deletes_and_encrypted_values_through_the_daemons(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    a, b, c = start_three(tmp_path, daemons)
    key_a = Identity.from_file(a / IDENTITY_FILE).public_key.hex()
    key_b = Identity.from_file(b / IDENTITY_FILE).public_key.hex()

    # A plain value: only its writer deletes it, and a read then says "deleted".
    assert command(a, "put", "greeting", "hello")[0] == 0
    status, _, err = command(b, "delete", "greeting")
    assert status == 1 and "only the node that wrote" in err
    assert command(a, "delete", "greeting")[0] == 0
    assert command(c, "get", "greeting") == (
        1,
        b"",
        "dhtkit: the value under greeting was deleted by its publisher\n",
    )
    code, body = http_status(b, "/v1/values/greeting")
    assert code == 410 and "deleted" in str(body["error"])

    # A signed value: deleted, still deleted after a replica restarts, then put again.
    assert command(a, "put-signed", "profile", "v1")[0] == 0
    assert command(a, "delete-signed", "profile")[0] == 0
    restarted = daemons[1]
    assert restarted.stop() == 0
    restarted.start()
    restarted.wait_for(b / API_FILE)
    wait_for_contacts(restarted, 1)
    status, _, err = command(b, "get-signed", key_a, "profile")
    assert status == 1 and "was deleted by its publisher (version 2)" in err
    code, _ = http_status(c, "/v1/signed/{}/profile".format(key_a))
    assert code == 410
    assert command(a, "put-signed", "profile", "v3")[0] == 0
    assert command(c, "get-signed", key_a, "profile")[:2] == (0, b"v3")

    # An encrypted value: b reads it, c cannot, and no store holds the plaintext.
    secret = "meet at the usual place"
    assert command(a, "put-encrypted", key_b, "note", secret)[0] == 0
    assert command(b, "get-encrypted", key_a, "note")[:2] == (0, secret.encode())
    status, _, err = command(c, "get-encrypted", key_a, "note")
    assert status == 1 and "cannot open the value" in err

    for daemon in list(daemons):
        daemons.remove(daemon)
        assert daemon.stop() == 0, daemon.output()
        log = daemon.output()
        assert "Traceback" not in log and "Unhandled" not in log, log
    for data in (a, b, c):
        db = sqlite3.connect(data / STORE_FILE)
        try:
            values = [row[0] for row in db.execute("SELECT value FROM records")]
        finally:
            db.close()
        assert values and not any(secret.encode() in v for v in values)
