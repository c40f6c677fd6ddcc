"""A Twisted application with a DHT node inside it.

Run it with ``twistd -ny examples/notebook.tac``. The application keeps a
note in the DHT, signed with the node's own key: each time it starts it
reads the note back, counts one more start, and stores the new version
(a compare-and-swap on the sequence number it read, so two copies of the
application sharing a key could not both win).

A ``.tac`` file takes no command line; it reads these environment variables:

``DHTKIT_PORT``      the node's UDP port (default 4000)
``DHTKIT_DATA_DIR``  its data directory (default ``notebook-data``)
``DHTKIT_BOOTSTRAP`` nodes to join through, ``host:port,host:port`` (default none)
"""

import os

from twisted.application.service import Application, Service
from twisted.internet import defer
from twisted.logger import Logger

from dhtkit import KademliaService
from dhtkit.bootstrap import parse_bootstrap

SALT = b"notebook"


class Notebook(Service):
    """The application's own service: it uses the node once it has joined."""

    _log = Logger()

    def __init__(self, dht: KademliaService) -> None:
        self.dht = dht

    def startService(self) -> None:
        super().startService()
        d = defer.Deferred.fromCoroutine(self.count_this_start())
        d.addErrback(lambda f: self._log.failure("the notebook could not be updated", f))

    async def count_this_start(self) -> None:
        await self.dht.when_joined()
        node = self.dht.node
        previous = await node.get_signed(self.dht.identity.public_key, SALT)
        seq = 0 if previous is None else previous.seq
        starts = 1 if previous is None else int(previous.value) + 1
        await node.put_signed(str(starts).encode(), salt=SALT, expected_seq=seq or None)
        self._log.info(
            "notebook: this application has started {starts} times (node {node_id})",
            starts=starts,
            node_id=self.dht.identity.node_id.hex(),
        )


def _bootstrap(text: str) -> list[tuple[str, int]]:
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            addresses.append(parse_bootstrap(item))
        except ValueError as e:
            raise SystemExit("DHTKIT_BOOTSTRAP: {!r}: {}".format(item, e)) from None
    return addresses


application = Application("notebook")
dht = KademliaService(
    port=int(os.environ.get("DHTKIT_PORT", "4000")),
    interface="127.0.0.1",
    data_dir=os.environ.get("DHTKIT_DATA_DIR", "notebook-data"),
    bootstrap=_bootstrap(os.environ.get("DHTKIT_BOOTSTRAP", "")),
)
dht.setServiceParent(application)
Notebook(dht).setServiceParent(application)
