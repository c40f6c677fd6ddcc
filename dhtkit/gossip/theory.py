"""What the analyses predict, to set the simulations against.

``p`` is the probability that a node is still susceptible (has not received
the update) after a round, or equivalently the susceptible fraction of a
large network; ``n`` the number of nodes. With synchronous rounds and
partners drawn uniformly (Demers et al., 1987; Karp et al., 2000):

- pull: a susceptible node stays so if the node it asks is susceptible too:
  ``p' = p**2``, exactly ``p * (p*n - 1) / (n - 1)`` among ``n`` nodes;
- push: it stays so if none of the ``n*(1-p)`` infected nodes picks it:
  ``p' = p * (1 - 1/(n-1)) ** (n*(1-p))``, about ``p * e**-(1-p)``, so
  ``p * e**-1`` once ``p`` is small (the seed text writes ``1 + 1/n``, a
  sign slip: the factor is a probability);
- push-pull: both at once: ``p' = p**2 * e**-(1-p)``.

For rumour mongering with feedback and a coin (a node loses interest with
probability 1/k after each contact with a node that knew already), the
susceptible fraction ``s`` and infected fraction ``i`` follow

    ds/dt = -s i,    di/dt = s i - (1/k) (1 - s) i,

whose end state (``i = 0``) is the root of ``s = exp(-(k+1) (1-s))``. The
blind coin (every contact counts) gives ``s = exp(-k (1-s))``. And whatever
the variant, the residue and the traffic ``m`` (update messages sent per
node) are related by ``s = e**-m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: Rounds for push to reach every node: log2 n + ln n (Frieze and Grimmett;
#: Pittel), and for push-pull about log3 n (Karp et al.).
LOG2 = math.log(2)
LOG3 = math.log(3)


def pull_next(p: float, n: int | None = None) -> float:
    """Susceptible probability after a pull round (``n`` nodes; None: infinitely many)."""
    if n is None:
        return p * p
    return max(0.0, p * (p * n - 1) / (n - 1))


def push_next(p: float, n: int | None = None) -> float:
    """Susceptible probability after a push round."""
    if n is None:
        return p * math.exp(-(1 - p))
    return p * math.pow(1 - 1 / (n - 1), n * (1 - p))


def pushpull_next(p: float, n: int | None = None) -> float:
    """Susceptible probability after a push-pull round."""
    return pull_next(p, n) * push_next(p, n) / p if p > 0 else 0.0


NEXT: dict[str, Callable[[float, int | None], float]] = {
    "pull": pull_next,
    "push": push_next,
    "pushpull": pushpull_next,
}


def anti_entropy_curve(mode: str, n: int, rounds: int) -> list[float]:
    """Expected susceptible fraction before round 1 and after each round.

    One node of ``n`` starts with the update; the recurrence is iterated on
    the expected fraction (a mean-field curve: it never quite reaches 0).
    """
    step = NEXT[mode]
    p = 1 - 1 / n
    out = [p]
    for _ in range(rounds):
        p = step(p, n)
        out.append(p)
    return out


def rounds_push(n: float) -> float:
    """log2 n + ln n: rounds for push to reach all of ``n`` nodes."""
    return math.log2(n) + math.log(n)


def rounds_pushpull(n: float) -> float:
    """log3 n: the leading term of push-pull's rounds to reach ``n`` nodes."""
    return math.log(n) / LOG3


def sir_residue(k: float, feedback: bool = True) -> float:
    """The susceptible fraction at the end of rumour mongering with a coin.

    The smaller root of ``s = exp(-c (1 - s))`` with ``c = k + 1`` (feedback)
    or ``c = k`` (blind); 1 when that is the only root (``c <= 1``: the
    rumour dies out at once).
    """
    c = k + 1 if feedback else k
    if c <= 1:
        return 1.0
    # Bisection on f(s) = s - exp(-c (1 - s)): f(0) < 0, and f > 0 just below
    # the trivial root s = 1, since f'(1) = 1 - c < 0.
    low, high = 0.0, 1.0 - 1e-9
    for _ in range(200):
        mid = (low + high) / 2
        if mid - math.exp(-c * (1 - mid)) < 0:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def sir_curve(
    k: float, n: int, rounds: int, feedback: bool = True, steps_per_round: int = 100
) -> list[float]:
    """The ODE's susceptible fraction before round 1 and after each round.

    Starts with one infected node of ``n``; one round is one unit of time
    (each infected node contacts one peer per round). Integrated with RK4.
    """
    s, i = 1 - 1 / n, 1 / n

    def derivative(s: float, i: float) -> tuple[float, float]:
        loss = (1 - s) * i / k if feedback else i / k
        return -s * i, s * i - loss

    h = 1.0 / steps_per_round
    out = [s]
    for _ in range(rounds):
        for _ in range(steps_per_round):
            a = derivative(s, i)
            b = derivative(s + h / 2 * a[0], i + h / 2 * a[1])
            c = derivative(s + h / 2 * b[0], i + h / 2 * b[1])
            d = derivative(s + h * c[0], i + h * c[1])
            s += h / 6 * (a[0] + 2 * b[0] + 2 * c[0] + d[0])
            i += h / 6 * (a[1] + 2 * b[1] + 2 * c[1] + d[1])
        out.append(s)
    return out


def residue_from_traffic(m: float) -> float:
    """``e**-m``: the residue that ``m`` update messages per node leave."""
    return math.exp(-m)


def susceptible_curve(
    model: str, mode: str, n: int, rounds: int, k: float = 2.0, variant: str = "coin"
) -> tuple[list[float], str]:
    """The curve to draw beside a simulation, and what it is.

    SI: the recurrence of ``mode``. SIR: the ODE above, feedback or blind by
    ``variant``; it models push with a coin, so for pull, push-pull and
    counters it is a reference rather than a prediction. The ODE runs in
    continuous time: early on it leads synchronous rounds (which double the
    infected, where the ODE multiplies them by e), and it ends at the same
    residue.
    """
    if model == "si":
        return anti_entropy_curve(mode, n, rounds), "theory: {} recurrence".format(mode)
    feedback = not variant.startswith("blind")
    label = "theory: push ODE, {} coin, k={:g}".format("feedback" if feedback else "blind", k)
    return sir_curve(k, n, rounds, feedback), label
