"""``dhtkit sim``: the real protocol code on the virtual network, against the theory.

``dhtkit sim gossip`` spreads rumours in synchronous rounds; ``dhtkit sim
kademlia`` and ``dhtkit sim chord`` build an overlay, put values and read
them back from random nodes. Each prints a short summary or, with
``--json``, one JSON object with the fields DESIGN.md names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dhtkit.cli import UsageError, at_least, number
from dhtkit.gossip import theory
from dhtkit.gossip.config import MODELS, MODES, VARIANTS, GossipConfig
from dhtkit.gossip.plot import PlotUnavailable, plot_susceptible, require_matplotlib
from dhtkit.sim import memory, overlays
from dhtkit.sim.gossip import MAX_CONCURRENT, simulate, summarize


def add_sim(commands: Any) -> None:
    """``dhtkit sim``: one subcommand per protocol."""
    sim = commands.add_parser(
        "sim", help="run a protocol on the virtual network", description="Simulations."
    )
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
    parser.add_argument(
        "--variant", choices=VARIANTS, default="coin", help="SIR loss rule (default: coin)"
    )
    parser.add_argument("--nodes", type=at_least(2), default=1000, metavar="N")
    parser.add_argument("--k", type=number(1), default=2.0, metavar="K", help="SIR: 1/k, or k")
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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="PNG", help="draw the curves (needs matplotlib)")
    parser.set_defaults(run=run_sim_gossip)


def run_sim_gossip(args: argparse.Namespace) -> int:
    """Run ``dhtkit sim gossip``."""
    try:
        config = GossipConfig(model=args.model, mode=args.mode, variant=args.variant, k=args.k)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.plot:
        try:
            require_matplotlib()
        except PlotUnavailable as e:
            raise UsageError("--plot: {}".format(e)) from None
        # Found out now, not after a long simulation.
        if not Path(args.plot).resolve().parent.is_dir():
            raise UsageError("--plot: no directory to write {} in".format(args.plot))
    try:
        memory.check_fits(args.nodes, memory.GOSSIP_BYTES_PER_NODE, memory.available_memory())
    except ValueError as e:
        raise UsageError("--nodes: {}".format(e)) from None
    if args.concurrent > min(MAX_CONCURRENT, args.nodes):
        raise UsageError(
            "--concurrent: at most {} rumours spread together".format(
                min(MAX_CONCURRENT, args.nodes)
            )
        )
    runs = simulate(
        config,
        args.nodes,
        seed=args.seed,
        runs=args.runs,
        concurrent=args.concurrent,
        max_rounds=args.max_rounds,
    )
    result = summarize(runs)
    curve, label = theory.susceptible_curve(
        config.model,
        config.mode,
        args.nodes,
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
        result["theory"]["rounds_push"] = theory.rounds_push(args.nodes)
        result["theory"]["rounds_pushpull"] = theory.rounds_pushpull(args.nodes)
    if args.plot:
        plot_susceptible(
            args.plot,
            result["susceptible"],
            curve,
            title=_title(config, args.nodes, args.runs),
            theory_label=label,
            nodes=args.nodes,
        )
    if args.json:
        print(json.dumps(result))
    else:
        _print_gossip_summary(config, result, args.plot)
    return 0


def _title(config: GossipConfig, nodes: int, runs: int) -> str:
    what = "{} {}".format(config.model.upper(), config.mode)
    if config.model == "sir":
        what += " {} k={:g}".format(config.variant, config.k)
    return "{}, {} nodes, mean of {} run{}".format(what, nodes, runs, "" if runs == 1 else "s")


def _print_gossip_summary(config: GossipConfig, result: dict[str, Any], plot: str | None) -> None:
    print(_title(config, result["nodes"], result["runs"]))
    status = "" if result["complete"] else " (stopped at the round limit)"
    if config.model == "si":
        print("  every node reached after {:.1f} rounds{}".format(result["rounds"], status))
        print(
            "  theory: log2 N + ln N = {:.1f} (push), log3 N = {:.1f} (push-pull)".format(
                result["theory"]["rounds_push"], result["theory"]["rounds_pushpull"]
            )
        )
    else:
        print("  the rumour died out after {:.1f} rounds{}".format(result["rounds"], status))
        print(
            "  residue {:.4f}; ODE root {:.4f}; e^-m {:.4f}".format(
                result["residue"],
                result["theory"]["residue"],
                result["theory"]["residue_from_messages"],
            )
        )
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
        "--churn", type=number(0, 0.9), default=0.0, metavar="F", help="fraction removed"
    )
    parser.add_argument(
        "--loss", type=number(0, 0.5), default=0.0, metavar="P", help="datagram loss"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run_sim_overlay, overlay=kind)


def run_sim_overlay(args: argparse.Namespace) -> int:
    """Run ``dhtkit sim`` for an overlay (one of :data:`dhtkit.overlays.OVERLAYS`)."""
    try:
        memory.check_fits(
            args.nodes, overlays.OVERLAYS[args.overlay].bytes_per_node, memory.available_memory()
        )
    except ValueError as e:
        raise UsageError("--nodes: {}".format(e)) from None
    result = overlays.simulate(
        args.overlay,
        args.nodes,
        args.lookups,
        seed=args.seed,
        churn=args.churn,
        loss=args.loss,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    hops = result["hops"]
    print(
        "{} nodes of {}, {} lookups{}{}".format(
            result["nodes"],
            result["overlay"].capitalize(),
            result["lookups"],
            ", {:.0%} removed".format(args.churn) if args.churn else "",
            ", {:.0%} loss".format(args.loss) if args.loss else "",
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
        "  {:.1f} messages per lookup; built in {:.1f} s, {:.1f} s in all".format(
            result["messages_per_lookup"], result["build_s"], result["wall_s"]
        )
    )
    return 0
