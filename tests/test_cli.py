"""The dhtkit command: subcommands, JSON output, and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import dhtkit
from dhtkit import cli
from dhtkit.cli.commands import COMMANDS
from dhtkit.overlays import OVERLAYS
from dhtkit.sim import memory, overlays
from tests.test_package_face import _loaded_after


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_sim_gossip_prints_json_with_the_contracted_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys, "sim", "gossip", "--model", "si", "--mode", "pull", "--nodes", "60",
        "--seed", "3", "--json",
    )  # fmt: skip
    assert status == 0 and err == ""
    result = json.loads(out)
    for key in ("model", "mode", "nodes", "rounds", "susceptible", "residue", "messages_per_node"):
        assert key in result
    assert (result["model"], result["mode"], result["nodes"]) == ("si", "pull", 60)
    assert result["susceptible"][0] == pytest.approx(59 / 60)
    assert result["susceptible"][-1] == 0 and result["residue"] == 0
    assert len(result["susceptible"]) == result["rounds"] + 1
    assert result["messages_per_node"] == pytest.approx(59 / 60)
    assert len(result["theory"]["susceptible"]) == len(result["susceptible"])


def test_sir_json_carries_the_theorys_residue(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "sim", "gossip", "--model", "sir", "--mode", "push", "--nodes", "80",
        "--k", "3", "--variant", "counter", "--runs", "2", "--concurrent", "2", "--json",
    )  # fmt: skip
    assert status == 0
    result = json.loads(out)
    assert (result["model"], result["variant"], result["k"], result["runs"]) == (
        "sir",
        "counter",
        3,
        2,
    )
    assert result["theory"]["residue"] == pytest.approx(0.0198, rel=0.01)
    assert 0 <= result["residue"] < 0.2 and result["messages_per_node"] > 1
    assert len(result["per_run"]) == 2


def test_the_same_seed_prints_the_same_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("sim", "gossip", "--model", "sir", "--nodes", "50", "--seed", "7", "--json")
    first = json.loads(run(capsys, *argv)[1])
    second = json.loads(run(capsys, *argv)[1])
    for result in (first, second):
        del result["wall_s"]
    assert first == second


def test_without_json_a_short_summary(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "sim", "gossip", "--nodes", "40", "--model", "sir")
    assert status == 0
    assert out.startswith("SIR pushpull coin k=2, 40 nodes")
    assert "residue" in out and "ODE root" in out and len(out.splitlines()) <= 6
    # The ODE and e^-m model push: beside pull or push-pull they are named as push's.
    assert "push's ODE root" in out and "do not model pushpull" in out
    status, out, _ = run(
        capsys, "sim", "gossip", "--nodes", "40", "--model", "sir", "--mode", "push"
    )
    assert "residue" in out and "push's" not in out
    status, out, _ = run(capsys, "sim", "gossip", "--nodes", "40", "--mode", "push")
    assert "every node reached after" in out and "log3 N" in out


def test_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    status, out, _ = run(capsys, "sim", "gossip", "--nodes", "40", "--plot", str(png))
    assert status == 0 and "plot written" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_plot_into_a_missing_directory_is_refused_before_simulating(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "missing" / "x.png"
    status, _, err = run(capsys, "sim", "gossip", "--nodes", "100000", "--plot", str(target))
    assert status == 2 and "no directory" in err and len(err.splitlines()) == 1


def test_plot_without_matplotlib_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, out, err = run(
        capsys, "sim", "gossip", "--nodes", "40", "--plot", str(tmp_path / "x.png")
    )
    assert status == 2 and out == ""
    assert err.startswith("dhtkit: error: --plot") and "matplotlib" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], "COMMAND"),
        (["sim"], "PROTOCOL"),
        (["sim", "chess"], "chess"),
        (["bogus"], "bogus"),
        (["sim", "gossip", "--nodes", "1"], "--nodes"),
        (["sim", "gossip", "--nodes", "many"], "--nodes"),
        (["sim", "gossip", "--model", "sis"], "--model"),
        (["sim", "gossip", "--mode", "shout"], "--mode"),
        (["sim", "gossip", "--k", "0.5"], "--k"),
        (["sim", "gossip", "--k", "nan"], "--k"),
        (["sim", "gossip", "--model", "sir", "--variant", "counter", "--k", "2.5"], "whole number"),
        (["sim", "gossip", "--concurrent", "9"], "--concurrent"),
        (["sim", "gossip", "--seed", "x"], "--seed"),
        (["sim", "gossip", "--frobnicate"], "--frobnicate"),
        (["sim", "kademlia", "--nodes", "1"], "--nodes"),
        (["sim", "chord", "--lookups", "0"], "--lookups"),
        (["sim", "kademlia", "--remove", "0.95"], "--remove"),
        (["sim", "chord", "--churn", "some"], "--churn"),
        (["sim", "kademlia", "--loss", "-0.1"], "--loss"),
        (["sim", "chord", "--loss", "inf"], "--loss"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], mentions: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dhtkit: error: ") and mentions in err
    assert "Traceback" not in err


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "sim", "gossip", "--help")
    assert status == 0 and "--model" in out and "--plot" in out


def test_main_reads_sys_argv_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["dhtkit", "sim"])
    assert cli.main() == 2
    assert "PROTOCOL" in capsys.readouterr().err


def test_a_simulation_too_large_for_memory_is_refused_before_it_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * memory.GIB)
    status, out, err = run(capsys, "sim", "gossip", "--nodes", "100000000", "--seed", "1")
    assert status == 2 and out == ""
    need = 100_000_000 * memory.GOSSIP_BYTES_PER_NODE / memory.GIB
    assert "--nodes: 100,000,000 nodes need about {:.1f} GiB".format(need) in err
    assert "2.0 GiB is available" in err
    # a size that fits runs
    assert run(capsys, "sim", "gossip", "--nodes", "20", "--seed", "1")[0] == 0


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_sim_overlay_prints_json_with_the_contracted_fields(
    capsys: pytest.CaptureFixture[str], overlay: str
) -> None:
    argv = ["sim", overlay, "--nodes", "40", "--lookups", "15", "--seed", "3", "--json"]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    result = json.loads(out)
    assert {"overlay", "nodes", "lookups", "success_rate", "hops", "messages_per_lookup"} <= set(
        result
    )
    assert "wall_s" in result
    assert (result["overlay"], result["nodes"], result["lookups"]) == (overlay, 40, 15)
    assert set(result["hops"]) == {"mean", "p50", "p95", "max"}
    assert result["success_rate"] == 1.0 and result["correct_rate"] == 1.0
    # Pastry reaches many keys straight from its leaf set: a mean below 1 hop.
    assert 0 < result["hops"]["mean"] <= result["hops"]["max"] <= 40
    assert result["messages_per_lookup"] >= result["hops"]["mean"]
    # The same seed gives the same figures (apart from the wall clock).
    again = json.loads(run(capsys, *argv)[1])
    assert {k: v for k, v in again.items() if not k.endswith("_s")} == {
        k: v for k, v in result.items() if not k.endswith("_s")
    }


def test_sim_overlay_summary_and_removal(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "sim", "kademlia", "--nodes", "40", "--lookups", "10", "--remove", "0.2"
    )
    assert status == 0
    assert out.startswith("40 nodes of Kademlia, 10 lookups, 20% removed")
    assert "hops: mean" in out and "theory: bound log2 N = 5.32" in out


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_sim_overlay_with_datagram_loss_completes(
    capsys: pytest.CaptureFixture[str], overlay: str
) -> None:
    # Joins whose pings are lost are tried again through another node.
    argv = ["sim", overlay, "--nodes", "60", "--lookups", "10", "--loss", "0.1", "--json"]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    result = json.loads(out)
    assert result["loss"] == 0.1
    assert result["success_rate"] >= 0.9


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out == "dhtkit {}\n".format(dhtkit.__version__)


def test_an_unexpected_exception_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the simulator broke\non two lines")

    monkeypatch.setattr(overlays, "simulate", broken)
    status, out, err = run(capsys, "sim", "kademlia", "--nodes", "10")
    assert status == 1 and out == ""
    assert err == (
        "dhtkit: error: internal error, please report it: RuntimeError: the simulator broke "
        "on two lines\n"
    )


def test_ctrl_c_during_a_simulation_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(overlays, "simulate", interrupted)
    assert run(capsys, "sim", "chord", "--nodes", "10") == (1, "", "dhtkit: error: interrupted\n")


#: What only some commands need: no other command may wait for it to load.
HEAVY = (
    "dhtkit.node",
    "dhtkit.service",
    "dhtkit.kademlia",
    "dhtkit.chord",
    "dhtkit.pastry",
    "dhtkit.sim",
    "dhtkit.gossip.protocol",
)


def _heavy(loaded: set[str]) -> list[str]:
    return [name for name in loaded if any(name == h or name.startswith(h + ".") for h in HEAVY)]


def test_building_the_parser_loads_no_node_overlay_simulator_or_gossip() -> None:
    loaded = _loaded_after("from dhtkit.cli import build_parser\nbuild_parser()")
    assert not _heavy(loaded), loaded
    assert "dhtkit.cli.api" not in loaded and "dhtkit.client" not in loaded


@pytest.mark.parametrize(
    ("command", "module"),
    [("get", "dhtkit.cli.api"), ("updates", "dhtkit.cli.gossip"), ("listen", "dhtkit.cli.listen")],
)
def test_a_client_command_loads_no_node_overlay_simulator_or_gossip(
    command: str, module: str
) -> None:
    statement = "from dhtkit.cli import main\nassert main([{!r}, '--help']) == 0".format(command)
    loaded = _loaded_after(statement)
    assert not _heavy(loaded), loaded
    assert module in loaded  # the command's parser was built, and it ran


def test_each_command_is_parsed_by_the_module_the_registry_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A module that added a command the registry gives to another would
    # collide with that command's placeholder, and building would fail.
    for name in COMMANDS:
        status, out, _ = run(capsys, name, "--help")
        assert status == 0 and out.startswith("usage: dhtkit {} ".format(name)), out


def test_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    listed = " ".join(out.split())
    for name, command in COMMANDS.items():
        assert "{} {}".format(name, command.summary) in listed
