"""The README's and the quick start's daemon blocks work when pasted as written.

Each shell block that starts daemons (a ``twistd ... &`` line) is run
verbatim by bash in a fresh directory, with a PATH whose ``twistd`` and
``dhtkit`` are this interpreter's (and the dhtkit being tested).

The blocks use fixed ports (4000, 4010, 4020), as a reader would; tox runs
several environments at once on one machine, so each block runs in a
network namespace of its own (``unshare``: only a loopback, private to the
block) and in a PID namespace that ends every daemon the block leaves
behind. Without namespaces (not Linux, no ``unshare`` or ``ip``, no root
and no user namespaces) these tests are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemons import child_env

ROOT = Path(__file__).resolve().parent.parent
#: A line that starts a daemon in the background.
_BACKGROUND_DAEMON = re.compile(r"^twistd .*&\s*$", re.M)
#: twistd's log lines (the daemons run in the foreground of their jobs).
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[")


def markdown_blocks(text: str) -> list[str]:
    """The ``sh`` and ``console`` fenced blocks of a Markdown text."""
    return re.findall(r"^```(?:sh|console)\n(.*?)^```", text, re.M | re.S)


def rst_blocks(text: str) -> list[str]:
    """The literal blocks (after ``::``) of a reStructuredText text, unindented."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:(?:[ \t]+\S.*)?\n)+)", text):
        lines = match.group(1).rstrip().splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        blocks.append("\n".join(line[indent:] for line in lines) + "\n")
    return blocks


def daemon_blocks(blocks: list[str]) -> list[str]:
    return [block for block in blocks if _BACKGROUND_DAEMON.search(block)]


def _namespace_command() -> list[str]:
    command = ["unshare", "--net", "--pid", "--fork", "--kill-child"]
    return command if os.geteuid() == 0 else [*command, "--user", "--map-root-user"]


def _unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    for tool in ("unshare", "ip", "bash", "curl"):
        if shutil.which(tool) is None:
            return "{} is not installed".format(tool)
    probe = subprocess.run(
        [*_namespace_command(), "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return "cannot make a network namespace (root or user namespaces needed): {}".format(
            probe.stderr.strip()
        )
    return None


def _path_with_this_dhtkit(bin_dir: Path) -> str:
    """A PATH whose twistd and dhtkit run this interpreter, then the system's tools."""
    bin_dir.mkdir()
    python = shlex.quote(sys.executable)
    commands = {
        "twistd": '{} -c "from twisted.scripts.twistd import run; run()" "$@"'.format(python),
        "dhtkit": '{} -m dhtkit.cli "$@"'.format(python),
    }
    for name, line in commands.items():
        script = bin_dir / name
        script.write_text("#!/bin/sh\nexec {}\n".format(line))
        script.chmod(0o755)
    system = [str(Path(shutil.which(tool) or "/usr/bin").parent) for tool in ("curl", "bash")]
    return os.pathsep.join(dict.fromkeys([str(bin_dir), *system, "/usr/bin", "/bin"]))


def run_block(block: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``block`` as written, by bash, in ``workdir`` and a namespace of its own."""
    workdir.mkdir()
    env = child_env()
    env["PATH"] = _path_with_this_dhtkit(workdir / "bin")
    # Nothing of the caller's reaches the block: no data directory, no home.
    for name in ("DHTKIT_DATA_DIR", "XDG_DATA_HOME"):
        env.pop(name, None)
    env["HOME"] = str(workdir)
    (workdir / "block.sh").write_text(block)
    inner = "ip link set lo up && exec bash block.sh"
    return subprocess.run(
        [*_namespace_command(), "sh", "-c", inner],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def output_of_commands(done: subprocess.CompletedProcess[str]) -> str:
    """The block's standard output without the daemons' log lines."""
    return "\n".join(line for line in done.stdout.splitlines() if not _LOG_LINE.match(line))


def check_ran_cleanly(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, everything
    assert "dhtkit: error" not in everything, everything
    assert "Unhandled" not in everything, everything


README_BLOCKS = daemon_blocks(markdown_blocks((ROOT / "README.md").read_text()))
QUICKSTART_BLOCKS = daemon_blocks(rst_blocks((ROOT / "docs" / "quickstart.rst").read_text()))

pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


def test_the_documents_have_the_blocks_these_tests_run() -> None:
    assert len(README_BLOCKS) == 1
    assert len(QUICKSTART_BLOCKS) == 1


def test_the_readme_three_daemon_block_works_as_written(tmp_path: Path) -> None:
    [block] = README_BLOCKS
    done = run_block(block, tmp_path / "readme")
    check_ran_cleanly(done)
    said = output_of_commands(done)
    # dhtkit put: the key and the replicas; get and curl: the value, twice.
    assert re.search(r"^replicas [123]$", said, re.M), said
    assert said.count("hello") == 2, said
    assert re.search(r"^node_id [0-9a-f]{40}$", said, re.M), said
    assert re.search(r"^contacts \d+$", said, re.M), said


def test_the_quickstart_daemon_block_works_as_written(tmp_path: Path) -> None:
    [block] = QUICKSTART_BLOCKS
    done = run_block(block, tmp_path / "quickstart")
    check_ran_cleanly(done)
    said = output_of_commands(done)
    assert re.search(r"^replicas [12]$", said, re.M), said
    assert said.count("hello") == 1, said


def test_blocks_are_found_in_both_formats() -> None:
    markdown = "x\n```sh\ntwistd -n dhtkit &\nls\n```\n```python\nprint()\n```\n"
    assert daemon_blocks(markdown_blocks(markdown)) == ["twistd -n dhtkit &\nls\n"]
    rst = "Run::\n\n    twistd -n dhtkit &\n      ls\n\nText.\n"
    assert daemon_blocks(rst_blocks(rst)) == ["twistd -n dhtkit &\n  ls\n"]
