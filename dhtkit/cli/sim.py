"""``dhtkit sim``: the real protocol code on the virtual network, against the theory.

``dhtkit sim gossip`` spreads rumours in synchronous rounds; ``dhtkit sim
kademlia|chord|pastry`` build an overlay, put values and read them back from
random nodes, under churn and a latency model if asked. Each prints a short
summary or, with ``--json``, one JSON object with the fields DESIGN.md names
(stdout); a progress bar goes to stderr when it is a terminal, or with
``--progress``; ``--plot`` draws the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dhtkit.cli.args import UsageError, at_least, number
from dhtkit.cli.commands import summary
from dhtkit.gossip import theory
from dhtkit.gossip.config import MODELS, MODES, VARIANTS, GossipConfig
from dhtkit.gossip.plot import PlotUnavailable, plot_susceptible, require_matplotlib
from dhtkit.sim import memory, overlays
from dhtkit.sim.gossip import MAX_CONCURRENT, simulate, summarize
from dhtkit.sim.latency import LATENCY_MODELS
from dhtkit.sim.plot import plot_overlay
from dhtkit.sim.progress import Progress, wanted
from dhtkit.sim.scenario import DEFAULT_RATE, MAX_WINDOW


def add_sim(commands: Any) -> None:
    """``dhtkit sim``: one subcommand per protocol."""
    sim = commands.add_parser("sim", help=summary("sim"), description="Simulations.")
    sims = sim.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    add_sim_gossip(sims)
    for kind in overlays.OVERLAYS:
        add_sim_overlay(sims, kind)


# -- dhtkit sim gossip ----------------------------------------------------------


def add_sim_gossip(sims: Any) -> None:
    """``dhtkit sim gossip``: rumours on the virtual network against the theory."""
    parser = sims.add_parser(
        "gossip",
        help="SI / SIR gossip in synchronous rounds",
        description="Spread one update through N nodes of the real gossip protocol on the "
        "virtual network, in synchronous rounds, and report the susceptible fraction per "
        "round beside the theory.",
    )
    parser.add_argument("--model", choices=MODELS, default="si", help="default: si")
    parser.add_argument("--mode", choices=MODES, default="pushpull", help="default: pushpull")
    parser.add_argument("--variant", choices=VARIANTS, help="SIR loss rule (default: coin)")
    parser.add_argument("--nodes", type=at_least(2), default=1000, metavar="N")
    parser.add_argument("--k", type=number(1), metavar="K", help="SIR: 1/k, or k (default: 2)")
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--runs", type=at_least(1), default=1, metavar="R", help="rumours")
    parser.add_argument(
        "--concurrent",
        type=at_least(1),
        default=1,
        metavar="C",
        help="rumours spread together, at most {} (default 1)".format(MAX_CONCURRENT),
    )
    parser.add_argument("--max-rounds", type=at_least(1), default=None, metavar="ROUNDS")
    _add_output_options(parser, "draw the curves (needs matplotlib)")
    parser.set_defaults(run=run_sim_gossip)


def _add_output_options(parser: Any, plot_help: str) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="PNG", help=plot_help)
    parser.add_argument(
        "--progress",
        action="store_true",
        help="draw the progress bar on stderr even when it is not a terminal",
    )


def _progress(args: argparse.Namespace) -> Progress | None:
    return Progress(sys.stderr) if wanted(sys.stderr, args.progress) else None


def _check_plot(path: str | None) -> None:
    # Found out now, not after a long simulation.
    if not path:
        return
    try:
        require_matplotlib()
    except PlotUnavailable as e:
        raise UsageError("--plot: {}".format(e)) from None
    if Path(path).is_dir():
        raise UsageError("--plot: {} is a directory; give the PNG file to write".format(path))
    if not Path(path).resolve().parent.is_dir():
        raise UsageError("--plot: no directory to write {} in".format(path))


def _check_memory(nodes: int, bytes_per_node: int) -> None:
    try:
        memory.check_fits(nodes, bytes_per_node, memory.available_memory())
    except ValueError as e:
        raise UsageError("--nodes: {}".format(e)) from None


def run_sim_gossip(args: argparse.Namespace) -> int:
    """Run ``dhtkit sim gossip``: check the options, simulate, report."""
    config = _gossip_config(args)
    result = summarize(
        simulate(
            config,
            args.nodes,
            seed=args.seed,
            runs=args.runs,
            concurrent=args.concurrent,
            max_rounds=args.max_rounds,
            progress=_progress(args),
        )
    )
    _add_gossip_theory(config, args.nodes, result)
    if args.plot:
        plot_susceptible(
            args.plot,
            result["susceptible"],
            result["theory"]["susceptible"],
            title=_title(config, args.nodes, args.runs),
            theory_label=result["theory"]["label"],
            nodes=args.nodes,
        )
    if args.json:
        print(json.dumps(result))
    else:
        _print_gossip_summary(config, result, args.plot)
    return 0


def _gossip_config(args: argparse.Namespace) -> GossipConfig:
    sir = {"variant": args.variant, "k": args.k}
    given = ["--" + name for name, value in sir.items() if value is not None]
    if args.model == "si" and given:
        # SI has no loss rule: taken silently, they would change nothing.
        raise UsageError(
            "{} {} only with --model sir".format(" and ".join(given), "go" if given[1:] else "goes")
        )
    try:
        config = GossipConfig(
            model=args.model,
            mode=args.mode,
            variant=args.variant or "coin",
            k=2.0 if args.k is None else args.k,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    _check_plot(args.plot)
    _check_memory(args.nodes, memory.GOSSIP_BYTES_PER_NODE)
    if args.concurrent > min(MAX_CONCURRENT, args.nodes):
        raise UsageError(
            "--concurrent: at most {} rumours spread together".format(
                min(MAX_CONCURRENT, args.nodes)
            )
        )
    return config


def _add_gossip_theory(config: GossipConfig, nodes: int, result: dict[str, Any]) -> None:
    curve, label = theory.susceptible_curve(
        config.model,
        config.mode,
        nodes,
        len(result["susceptible"]) - 1,
        config.k,
        config.variant,
    )
    result["theory"] = {"label": label, "susceptible": curve}
    if config.model == "sir":
        result["theory"]["residue"] = theory.sir_residue(config.k, config.feedback)
        result["theory"]["residue_from_messages"] = theory.residue_from_traffic(
            result["messages_per_node"]
        )
    else:
        result["theory"]["rounds_push"] = theory.rounds_push(nodes)
        result["theory"]["rounds_pushpull"] = theory.rounds_pushpull(nodes)


def _title(config: GossipConfig, nodes: int, runs: int) -> str:
    what = "{} {}".format(config.model.upper(), config.mode)
    if config.model == "sir":
        what += " {} k={:g}".format(config.variant, config.k)
    return "{}, {} nodes, mean of {} run{}".format(what, nodes, runs, "" if runs == 1 else "s")


def _print_gossip_summary(config: GossipConfig, result: dict[str, Any], plot: str | None) -> None:
    print(_title(config, result["nodes"], result["runs"]))
    # A run the round limit stopped did not finish: say what it left.
    stopped = "  stopped at the round limit after {:.1f} rounds, {:.1%} of the nodes not reached{}"
    if config.model == "si":
        if result["complete"]:
            print("  every node reached after {:.1f} rounds".format(result["rounds"]))
        else:
            print(stopped.format(result["rounds"], result["residue"], ""))
        print(
            "  theory: log2 N + ln N = {:.1f} (push), log3 N = {:.1f} (push-pull)".format(
                result["theory"]["rounds_push"], result["theory"]["rounds_pushpull"]
            )
        )
    else:
        if result["complete"]:
            print("  the rumour died out after {:.1f} rounds".format(result["rounds"]))
        else:
            print(stopped.format(result["rounds"], result["residue"], ", still spreading"))
        theory = "ODE root {:.4f}; e^-m {:.4f}".format(
            result["theory"]["residue"], result["theory"]["residue_from_messages"]
        )
        if config.mode != "push":
            # Both model push alone (see the gossip docs): say so.
            theory = "push's {}, which do not model {}".format(theory, config.mode)
        print("  residue {:.4f}; {}".format(result["residue"], theory))
    print(
        "  {:.2f} update messages and {:.2f} exchanges per node; {:.1f} s".format(
            result["messages_per_node"], result["exchanges_per_node"], result["wall_s"]
        )
    )
    if plot:
        print("  plot written to {}".format(plot))


# -- dhtkit sim OVERLAY (each of dhtkit.overlays) ---------------------------------


def add_sim_overlay(sims: Any, kind: str) -> None:
    """``dhtkit sim OVERLAY``: lookups and reads on the virtual network."""
    parser = sims.add_parser(
        kind,
        help="{} lookups on the virtual network".format(kind.capitalize()),
        description="Build a {} network of N nodes of the real protocol on the virtual "
        "network, put values, optionally remove a fraction of the nodes at once, then look "
        "keys up and read the values back from random nodes.".format(kind.capitalize()),
    )
    parser.add_argument("--nodes", type=at_least(2), default=1000, metavar="N")
    parser.add_argument(
        "--lookups", type=at_least(1), default=200, metavar="L", help="values put and read"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument(
        "--churn",
        type=number(0, 10),
        default=0.0,
        metavar="F",
        help="fraction of the nodes that leaves per simulated hour, each replaced by a "
        "newcomer (exponential sessions of mean 1/F hours; the lookups spread over an hour)",
    )
    parser.add_argument(
        "--remove",
        type=number(0, 0.9),
        default=0.0,
        metavar="F",
        help="fraction of the nodes taken down at once before the lookups",
    )
    parser.add_argument(
        "--loss", type=number(0, 0.5), default=0.0, metavar="P", help="datagram loss"
    )
    parser.add_argument(
        "--latency",
        choices=LATENCY_MODELS,
        default="constant",
        help="how long a datagram takes (default: constant)",
    )
    parser.add_argument(
        "--rtt",
        type=number(0.001, 10_000),
        default=20.0,
        metavar="MS",
        help="median round-trip time in milliseconds (default 20)",
    )
    parser.add_argument(
        "--duration",
        type=number(0.001, 30 * 86_400),
        default=None,
        metavar="SECONDS",
        help="simulated seconds over which the lookups are spread "
        "(default: an hour with --churn, else {:g} lookups a second, "
        "over at most {:g} s)".format(DEFAULT_RATE, MAX_WINDOW),
    )
    parser.add_argument(
        "--trust-sim",
        action="store_true",
        help="do not check MACs and signatures in the virtual network (faster; the "
        "report says authenticated: false)",
    )
    _add_output_options(parser, "draw the hop histogram and success and latency over time")
    parser.set_defaults(run=run_sim_overlay, overlay=kind)


def run_sim_overlay(args: argparse.Namespace) -> int:
    """Run ``dhtkit sim`` for an overlay (one of :data:`dhtkit.overlays.OVERLAYS`)."""
    _check_memory(args.nodes, overlays.OVERLAYS[args.overlay].bytes_per_node)
    _check_plot(args.plot)
    options: dict[str, Any] = {
        "seed": args.seed,
        "churn": args.churn,
        "remove": args.remove,
        "loss": args.loss,
        "latency": args.latency,
        "rtt": args.rtt / 1000,
        "progress": _progress(args),
        "trust_sim": args.trust_sim,
    }
    if args.duration is not None:
        options["duration"] = args.duration
    result = overlays.simulate(args.overlay, args.nodes, args.lookups, **options)
    if args.plot:
        plot_overlay(args.plot, result, title=_overlay_title(result))
    if args.json:
        print(json.dumps(result))
    else:
        _print_overlay_summary(result, args.plot)
    return 0


def _overlay_title(result: dict[str, Any]) -> str:
    return "{} nodes of {}, {} lookups{}{}{}{}".format(
        result["nodes"],
        result["overlay"].capitalize(),
        result["lookups"],
        ", {:.0%} removed".format(result["remove"]) if result["remove"] else "",
        ", {:.0%} churn per hour".format(result["churn"]) if result["churn"] else "",
        ", {:.0%} loss".format(result["loss"]) if result["loss"] else "",
        "" if result["authenticated"] else ", MACs and signatures unchecked",
    )


def _print_overlay_summary(result: dict[str, Any], plot: str | None) -> None:
    hops = result["hops"]
    print(_overlay_title(result))
    if result["join_failures"]:
        print(
            "  {} of the {} nodes never joined (every attempt failed) and are left out".format(
                result["join_failures"], result["nodes"]
            )
        )
    print(
        "  reads found {:.1%} of the values; lookups named the true owner {:.1%}".format(
            result["success_rate"], result["correct_rate"]
        )
    )
    print(
        "  hops: mean {:.2f}, p50 {:g}, p95 {:g}, max {}; theory: {} = {:.2f}".format(
            hops["mean"],
            hops["p50"],
            hops["p95"],
            hops["max"],
            result["theory"]["label"],
            result["theory"]["hops"],
        )
    )
    print(
        "  lookup latency ({} model, median RTT {:g} ms): p50 {:.1f} ms, p99 {:.1f} ms".format(
            result["latency_model"]["name"],
            result["latency_model"]["rtt_ms"],
            result["latency_ms"]["p50"],
            result["latency_ms"]["p99"],
        )
    )
    print(
        "  {:.1f} messages per lookup; built in {:.1f} s, {:.1f} s in all".format(
            result["messages_per_lookup"], result["build_s"], result["wall_s"]
        )
    )
    if plot:
        print("  plot written to {}".format(plot))
