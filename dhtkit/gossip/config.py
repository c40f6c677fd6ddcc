"""How a gossip node behaves: the epidemic model, the exchange, the loss rule."""

from __future__ import annotations

import attrs
from attrs import validators

from dhtkit.gossip.update import MAX_UPDATE_BYTES

#: SI: anti-entropy, a node that has an update keeps offering it.
#: SIR: rumour mongering, a node stops spreading an update (is *removed*)
#: after contacts with peers that knew it already.
MODELS = ("si", "sir")
#: Who sends what in one exchange: the caller's updates to the peer (push),
#: the peer's to the caller (pull), or both (pushpull).
MODES = ("push", "pull", "pushpull")
#: When a rumour is dropped (SIR only). ``coin``: with probability 1/k after
#: each contact with a peer that knew it already (feedback); ``counter``:
#: after k such contacts; the ``blind-`` variants count every contact,
#: whether the peer knew the update or not.
VARIANTS = ("coin", "counter", "blind-coin", "blind-counter")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError("{} must be positive, not {!r}".format(attribute.name, value))


@attrs.frozen
class GossipConfig:
    """The options of a :class:`~dhtkit.gossip.protocol.GossipProtocol`.

    :param model: ``"si"`` or ``"sir"`` (see :data:`MODELS`).
    :param mode: ``"push"``, ``"pull"`` or ``"pushpull"``.
    :param variant: the SIR loss rule (see :data:`VARIANTS`).
    :param k: the loss rule's parameter: 1/k is the coin's probability, k the
        counter's limit.
    :param period: mean seconds between two rounds of one node.
    :param jitter: each interval is drawn uniformly from
        ``period * [1 - jitter, 1 + jitter]``, so that nodes do not fall in step.
    :param ttl: default lifetime of a published update, in seconds.
    :param max_ttl: updates expiring further ahead than this (plus
        ``max_clock_skew``) are refused: nobody may fill stores for ever.
    :param max_clock_skew: seconds of clock difference tolerated in expiry times.
    :param max_updates: updates (death certificates included) a node holds.
    :param max_update_bytes: the size limit of one encoded update.
    :param call_timeout: seconds to wait for a peer's answer (None: the RPC
        layer's default).
    """

    model: str = attrs.field(default="si", validator=validators.in_(MODELS))
    mode: str = attrs.field(default="pushpull", validator=validators.in_(MODES))
    variant: str = attrs.field(default="coin", validator=validators.in_(VARIANTS))
    k: float = attrs.field(default=2.0, converter=float, validator=_positive)
    period: float = attrs.field(default=1.0, converter=float, validator=_positive)
    jitter: float = attrs.field(
        default=0.5, converter=float, validator=[validators.ge(0.0), validators.le(1.0)]
    )
    ttl: float = attrs.field(default=3600.0, converter=float, validator=_positive)
    max_ttl: float = attrs.field(default=7 * 86400.0, converter=float, validator=_positive)
    max_clock_skew: float = attrs.field(
        default=600.0, converter=float, validator=validators.ge(0.0)
    )
    max_updates: int = attrs.field(default=10_000, validator=validators.ge(1))
    max_update_bytes: int = attrs.field(
        default=MAX_UPDATE_BYTES, validator=[validators.ge(100), validators.le(MAX_UPDATE_BYTES)]
    )
    call_timeout: float | None = attrs.field(default=None)

    @k.validator
    def _check_k(self, attribute: attrs.Attribute[float], value: float) -> None:
        if self.variant.endswith("counter") and (value < 1 or value != int(value)):
            raise ValueError("a counter's k is a whole number >= 1, not {!r}".format(value))
        if value < 1:
            raise ValueError("k must be at least 1 (1/k is a probability), not {!r}".format(value))

    @property
    def push(self) -> bool:
        """Whether the caller sends its updates."""
        return self.mode != "pull"

    @property
    def pull(self) -> bool:
        """Whether the caller asks for the peer's updates."""
        return self.mode != "push"

    @property
    def feedback(self) -> bool:
        """Whether only contacts with peers that knew an update count toward its loss."""
        return not self.variant.startswith("blind")

    @property
    def counter(self) -> bool:
        """Whether the loss rule counts contacts (else it tosses a coin)."""
        return self.variant.endswith("counter")
