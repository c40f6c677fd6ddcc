"""A Kademlia node that lies about the records it holds, for the daemon tests.

lying_node.py PORT DATA_DIR BOOTSTRAP_PORT LIE

joins the daemons on 127.0.0.1 through BOOTSTRAP_PORT, stores what it is
sent like any node, but answers every ``get`` and ``find_value`` with its
record and the lie named by LIE:

* ``bignum-ttl``: a remaining lifetime of 10**400 seconds (a CBOR bignum).

It prints "READY" once joined and runs until killed.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor

from dhtkit import KademliaService

LIES = {"bignum-ttl": lambda answer: [answer[0], 10**400]}


def main(port: int, data_dir: str, bootstrap: int, lie: str) -> None:
    tell = LIES[lie]
    svc = KademliaService(
        port=port,
        interface="127.0.0.1",
        data_dir=data_dir,
        bootstrap=[("127.0.0.1", bootstrap)],
        reactor=reactor,
    )
    svc.startService()
    honest = svc.node.holder.answer

    def lying(key: bytes) -> Any:
        answer = honest(key)
        return None if answer is None else tell(answer)

    svc.node.holder.answer = lying  # type: ignore[method-assign]
    svc.overlay.serve_values(lying)  # type: ignore[attr-defined]
    svc.when_joined().addCallback(lambda _: print("READY", flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4])
