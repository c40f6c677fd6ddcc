"""docs/daemon.rst's production recipes, run or parsed as written: the systemd unit and JSON logs.

(Scraping ``/metrics`` with the token is tested against real nodes in
``tests/test_web_metrics.py``.)
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.logger import eventsFromJSONLogFile
from twisted.scripts.twistd import ServerOptions

from dhtkit.datadir import API_FILE
from tests.daemons import TWISTD, child_env, free_udp_port_with_tcp_after

DOCS = Path(__file__).resolve().parent.parent / "docs" / "daemon.rst"
#: Twisted's ``twist`` runner, run by this interpreter (no console script needed).
TWIST = [sys.executable, "-c", "from twisted.application.twist._twist import Twist; Twist.main()"]


def literal_block_after(marker: str) -> list[str]:
    """The lines of the indented literal block that contains (or follows) ``marker``, dedented."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    while not lines[start].startswith("    "):
        start += 1
    block: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    while block and not block[-1]:
        block.pop()
    return block


def joined(lines: list[str]) -> list[str]:
    """Lines with their backslash continuations joined."""
    out: list[str] = []
    carry = ""
    for line in lines:
        if line.endswith("\\"):
            carry += line[:-1]
            continue
        out.append(carry + line)
        carry = ""
    return out


def test_the_systemd_unit_runs_twistd_in_the_foreground_with_valid_options() -> None:
    unit = joined(literal_block_after("# /etc/systemd/system/dhtkit.service"))
    settings = dict(line.split("=", 1) for line in unit if "=" in line and not line.startswith("#"))
    assert settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "dhtkit"
    command = shlex.split(settings["ExecStart"])
    assert command[0].endswith("/bin/twistd")
    config = ServerOptions()
    config.parseOptions(command[1:])
    assert config["nodaemon"]
    assert config["pidfile"] == ""  # systemd knows the process; no pid file
    assert config.subCommand == "dhtkit"
    node = config.subOptions
    # The data directory is the one StateDirectory= creates.
    assert node["data-dir"] == Path("/var/lib") / settings["StateDirectory"]
    assert node["port"] == 4000
    assert node["interface"] == "0.0.0.0"
    assert node["bootstrap"] == [("seed.example.org", 4000)]


def run_documented(command: list[str], workdir: Path, log: Path) -> list[dict[str, object]]:
    """Run a daemon command of the docs until its API is up, stop it, and read its JSON log."""
    port = free_udp_port_with_tcp_after()
    data = workdir / "data"
    args = [str(port) if word == "4000" else word for word in command]
    args = [str(log) if word.endswith("node.json") else word for word in args]
    env = child_env()
    env["PYTHONPATH"] = "{}:{}".format(workdir, env["PYTHONPATH"])
    with open(workdir / "output", "wb") as output:
        process = subprocess.Popen(
            [*args, "--data-dir", str(data)],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            # Up once its API file is written and its log has begun: ``twist``
            # starts the service before it starts logging and installs its
            # signal handlers, so a SIGTERM in that gap (seen once under load)
            # ends the process before any event reaches the file.
            while not ((data / API_FILE).exists() and _has_dhtkit_event(log)):
                assert process.poll() is None, (workdir / "output").read_text()
                assert time.monotonic() < deadline, (workdir / "output").read_text()
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    with open(log) as events:
        return list(eventsFromJSONLogFile(events))


def _has_dhtkit_event(log: Path) -> bool:
    try:
        return b'"dhtkit.' in log.read_bytes()
    except FileNotFoundError:
        return False


def check_json_log(events: list[dict[str, object]]) -> None:
    namespaces = {str(e.get("log_namespace")) for e in events}
    assert any(n.startswith("dhtkit.") for n in namespaces), namespaces
    # An event keeps its fields beside its text.
    schema = [e for e in events if "{path} is at schema version" in str(e.get("log_format"))]
    assert schema and str(schema[0]["path"]).endswith("dhtkit.sqlite")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_twist_writes_the_json_log_the_docs_promise(tmp_path: Path) -> None:
    [line] = literal_block_after("twist --log-format json")
    command = shlex.split(line)
    assert command[0] == "twist"
    log = tmp_path / "node.json"
    check_json_log(run_documented([*TWIST, *command[1:]], tmp_path, log))
    # RFC 7464: each event follows an ASCII record separator.
    assert log.read_bytes().startswith(b"\x1e{")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_twistds_logger_option_takes_the_observer_module_of_the_docs(tmp_path: Path) -> None:
    module = literal_block_after("from twisted.logger import jsonFileLogObserver")
    log = tmp_path / "node.json"
    source = "\n".join(module).replace("/var/log/dhtkit/node.json", str(log))
    (tmp_path / "dhtkit_jsonlog.py").write_text(source + "\n")
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("``twistd -n --pidfile= --logger")
    line = text[start + 2 : text.index("``", start + 2)]
    command = shlex.split(line.replace("\n", " "))
    assert command[0] == "twistd"
    check_json_log(run_documented([*TWISTD, *command[1:]], tmp_path, log))
