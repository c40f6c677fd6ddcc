"""``dhtkit sim``: the progress bar on stderr, plots for every overlay, churn and latency flags."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from dhtkit import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_progress_goes_to_stderr_and_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("sim", "kademlia", "--nodes", "30", "--lookups", "6", "--json", "--progress")
    status, out, err = run(capsys, *argv)
    assert status == 0
    assert json.loads(out)["nodes"] == 30
    for stage in ("joined 30/30", "put 6/6", "looked up 6/6"):
        assert stage in err
    assert "\r" in err and "/s" in err


def test_a_long_lookup_window_shows_its_simulated_time_and_changes_no_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two hours of simulated time between four lookups: the bar says how far
    # the window has gone, and drawing it changes nothing in the simulation.
    argv = ("sim", "kademlia", "--nodes", "10", "--lookups", "4", "--duration", "7200")
    status, out, err = run(capsys, *argv, "--json", "--progress")
    assert status == 0 and "looked up 4/4" in err
    assert re.search(r"simulated \dh\d\dm of 2h00m", err)
    quiet = run(capsys, *argv, "--json")[1]
    shown, hidden = json.loads(out), json.loads(quiet)
    for result in (shown, hidden):
        for name in ("build_s", "run_s", "wall_s"):
            result.pop(name, None)
    assert shown == hidden


def test_no_progress_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "sim", "pastry", "--nodes", "20", "--lookups", "3", "--json")
    assert status == 0 and err == ""
    assert json.loads(out)["lookups"] == 3


def test_gossip_progress_counts_nodes_and_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "sim", "gossip", "--nodes", "50", "--json", "--progress")
    assert status == 0
    rounds = json.loads(out)["rounds"]
    assert "started 50/50" in err
    assert "rounds {0:g}/{0:g}".format(rounds) in err


def test_churn_latency_and_rtt_reach_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "pastry", "--nodes", "30", "--lookups", "5", "--churn", "0.5"]
    argv += ["--duration", "120", "--latency", "lognormal", "--rtt", "80", "--json"]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    result = json.loads(out)
    assert result["churn"] == 0.5 and result["window_s_simulated"] == 120.0
    assert result["latency_model"] == {"name": "lognormal", "rtt_ms": 80.0}
    assert result["authenticated"] is True
    assert {"p50", "p99"} <= set(result["latency_ms"])


def test_summary_shows_latency(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "sim", "chord", "--nodes", "20", "--lookups", "4")
    assert status == 0
    assert "lookup latency (constant model, median RTT 20 ms): p50" in out


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--latency", "gaussian"], "--latency"),
        (["--rtt", "0"], "--rtt"),
        (["--churn", "-1"], "--churn"),
        (["--remove", "0.95"], "--remove"),
        (["--duration", "0"], "--duration"),
    ],
)
def test_bad_options_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    status, out, err = run(capsys, "sim", "kademlia", *argv)
    assert status == 2 and out == "" and option in err


@pytest.mark.parametrize("overlay", ["kademlia", "chord", "pastry"])
def test_plot_for_every_overlay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, overlay: str
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "{}.png".format(overlay)
    argv = ("sim", overlay, "--nodes", "20", "--lookups", "5", "--plot", str(png))
    status, out, _ = run(capsys, *argv)
    assert status == 0 and "plot written" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_bin_whose_lookups_all_failed_leaves_a_gap_in_the_latency_line() -> None:
    pytest.importorskip("matplotlib")
    from dhtkit.sim.plot import overlay_figure

    def bin_(t: float, rate: float, p50: float | None) -> dict[str, Any]:
        return {"t_s": t, "lookups": 4, "success_rate": rate, "latency_ms_p50": p50}

    result = {
        "hop_histogram": {"1": 3, "2": 5},
        "hops": {"mean": 1.6},
        "theory": {"hops": 2.0, "label": "theory"},
        "timeline": [bin_(30, 1.0, 12.5), bin_(90, 0.0, None), bin_(150, 0.5, 20.0)],
    }
    figure = overlay_figure(result, title="t")
    latency = figure.axes[-1].lines[0].get_ydata()
    assert latency[0] == 12.5 and math.isnan(latency[1]) and latency[2] == 20.0


def test_overlay_plot_into_a_missing_directory_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "missing" / "x.png"
    status, _, err = run(capsys, "sim", "chord", "--nodes", "10", "--plot", str(target))
    assert status == 2 and "no directory" in err


def test_trust_sim_skips_authenticators_and_the_report_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["sim", "kademlia", "--nodes", "30", "--lookups", "5", "--json"]
    status, out, _ = run(capsys, *argv, "--trust-sim")
    assert status == 0
    trusted = json.loads(out)
    assert trusted["authenticated"] is False
    assert trusted["success_rate"] == 1.0
    status, out, _ = run(capsys, *argv)
    assert json.loads(out)["authenticated"] is True
    status, out, _ = run(capsys, "sim", "chord", "--nodes", "20", "--lookups", "4", "--trust-sim")
    assert "MACs and signatures unchecked" in out


def test_removing_nearly_every_node_leaves_one_to_read_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # round(3 * 0.9) is 3: every node would go, and no lookup could start.
    argv = ("sim", "chord", "--nodes", "3", "--lookups", "4", "--remove", "0.9", "--json")
    status, out, _ = run(capsys, *argv)
    assert status == 0
    result = json.loads(out)
    assert result["lookups"] == 4 and result["abandoned"] == 0


@pytest.mark.parametrize("sim", [["chord", "--lookups", "3"], ["gossip"]])
def test_a_plot_is_a_png_under_the_name_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sim: list[str]
) -> None:
    pytest.importorskip("matplotlib")
    for name in ("no-extension", "figure.txt"):
        target = tmp_path / name
        status, out, _ = run(capsys, "sim", *sim, "--nodes", "20", "--plot", str(target))
        assert status == 0 and "plot written to {}".format(target) in out
        assert target.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.txt", "no-extension"]


def test_a_plot_onto_a_directory_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "sim", "pastry", "--nodes", "10", "--plot", str(tmp_path))
    assert status == 2 and out == "" and "is a directory" in err


@pytest.mark.parametrize("model", ["si", "sir"])
def test_a_gossip_run_stopped_by_the_round_limit_says_what_it_left(
    capsys: pytest.CaptureFixture[str], model: str
) -> None:
    argv = ("sim", "gossip", "--nodes", "300", "--max-rounds", "3", "--model", model)
    status, out, _ = run(capsys, *argv)
    assert status == 0
    assert "stopped at the round limit after 3.0 rounds" in out and "not reached" in out
    assert "every node reached" not in out and "died out" not in out


def test_the_summary_counts_the_nodes_that_never_joined(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ("sim", "chord", "--nodes", "30", "--lookups", "5", "--loss", "0.5")
    status, out, _ = run(capsys, *argv)
    assert status == 0
    failures = int(out.splitlines()[1].split()[0])
    assert failures > 0
    assert "{} of the 30 nodes never joined".format(failures) in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--k", "3"], "--k goes only with --model sir"),
        (["--variant", "counter"], "--variant goes only with --model sir"),
        (["--model", "si", "--k", "2", "--variant", "blind-coin"], "--variant and --k go only"),
    ],
)
def test_sir_options_are_refused_for_si_rather_than_ignored(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    status, out, err = run(capsys, "sim", "gossip", "--nodes", "50", *argv)
    assert status == 2 and out == "" and says in err


def test_sir_options_still_shape_an_sir_run(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("sim", "gossip", "--nodes", "50", "--model", "sir", "--k", "3", "--json")
    status, out, _ = run(capsys, *argv)
    assert status == 0
    result = json.loads(out)
    assert (result["model"], result["k"], result["variant"]) == ("sir", 3.0, "coin")
