"""Epidemic dissemination: SI anti-entropy and SIR rumour mongering.

Push, pull or push-pull exchanges with one random peer per round (Demers et
al., "Epidemic Algorithms for Replicated Database Maintenance", PODC 1987;
Karp et al., "Randomized Rumor Spreading", FOCS 2000), carrying updates
signed by their originator. See :mod:`dhtkit.gossip.protocol`.
"""

from dhtkit.gossip.config import MODELS, MODES, VARIANTS, GossipConfig
from dhtkit.gossip.protocol import GossipProtocol
from dhtkit.gossip.sampler import ContactList, IPeerSampler, OverlayPeers, StaticPeers
from dhtkit.gossip.state import GossipState, Outcome, Subscription
from dhtkit.gossip.update import (
    MAX_UPDATE_BYTES,
    ForgedUpdate,
    MalformedUpdate,
    Update,
    UpdateError,
    UpdateTooLarge,
)

__all__ = [
    "MAX_UPDATE_BYTES",
    "MODELS",
    "MODES",
    "VARIANTS",
    "ContactList",
    "ForgedUpdate",
    "GossipConfig",
    "GossipProtocol",
    "GossipState",
    "IPeerSampler",
    "MalformedUpdate",
    "Outcome",
    "OverlayPeers",
    "StaticPeers",
    "Subscription",
    "Update",
    "UpdateError",
    "UpdateTooLarge",
]
